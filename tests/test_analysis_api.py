"""ae_lab.analysis.runs without real runs: the online source with `wandb.Api` replaced at its
boundary by a fake with the same attribute names, and a run's media read back (online or from an
offline run's log)."""

import json
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from ae_lab.analysis import runs as runs_module
from ae_lab.analysis.report import Analysis, create_wandb_report
from ae_lab.analysis.runs import load_runs, media_files
from ae_lab.errors import AeLabError
from tests import fake_runs

TABLE_PATH = "media/table/test/scores_7_0123abcd.table.json"


class FakeFile:
    def __init__(self, name: str, content: dict):
        self.name, self._content = name, content

    def download(self, root: str = ".", replace: bool = False, exist_ok: bool = False, api=None):
        path = Path(root) / self.name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self._content))
        return path.open()


class FakeRun:
    def __init__(self, logged: dict, state: str = "finished", job_type: str = "train", **extra):
        self.id = f"id{abs(hash(logged['name'] + state + job_type)) % 10**6:06d}"
        self.name, self.state, self.job_type = logged["name"], state, job_type
        self.group, self.config, self.sweep = fake_runs.GROUP, logged["config"], None
        self.url = f"https://wandb.example/me/{fake_runs.PROJECT}/runs/{self.id}"
        tree = {**logged["summary"], "_wandb": {"runtime": 3}}
        if "scores" in logged:
            tree["test/scores"] = {"_type": "table-file", "path": TABLE_PATH, "nrows": 40}
            cols = list(logged["scores"][0])
            self._files = {
                TABLE_PATH: {"columns": cols, "data": [list(r.values()) for r in logged["scores"]]}
            }
        self.summary_metrics = tree
        self.scans = 0
        # As stored by W&B: val and train rows apart, each with its own _step.
        self._rows = []
        for h in logged["history"]:
            val = {k: v for k, v in h.items() if k.startswith("val/")}
            self._rows += [{"_step": len(self._rows), "epoch": h["epoch"], **val}]
            self._rows += [
                {"_step": len(self._rows), "epoch": h["epoch"], "train/loss": h["train/loss"]}
            ]

    def scan_history(self, keys=None, page_size=1000, min_step=0, max_step=None, use_cache=True):
        self.scans += 1
        return (r for r in self._rows if all(k in r for k in keys or []))

    def file(self, name: str) -> FakeFile:
        return FakeFile(name, self._files[name])


class FakeApi:
    default_entity = "me"

    def __init__(self, runs: list[FakeRun]):
        self._runs, self.calls = runs, []

    def runs(self, path: str, filters: dict | None = None, **kwargs):
        self.calls.append((path, filters))
        if path != f"me/{fake_runs.PROJECT}":
            raise ValueError(f"Could not find project {path}")
        return [
            r for r in self._runs if all(getattr(r, k) == v for k, v in (filters or {}).items())
        ]


@pytest.fixture
def grid():
    logged = {fake_runs.run_name(s): fake_runs.logged_values(s) for s in fake_runs.GRID}
    extra = fake_runs.logged_values({"model": "vae", "loss": "l2", "latent_dim": 8})
    testless = {k: v for k, v in extra.items() if k != "scores"} | {"summary": {}}
    runs = [FakeRun(v) for v in logged.values()]
    runs += [
        FakeRun(extra, state="crashed"),
        FakeRun(extra, job_type="analysis"),
        FakeRun(testless),
    ]
    return logged, runs


def test_api_source_fills_the_frames_and_skips_bad_runs(grid):
    logged, runs = grid
    api = FakeApi(runs)
    data = load_runs(fake_runs.PROJECT, group=fake_runs.GROUP, api=api)
    assert api.calls == [(f"me/{fake_runs.PROJECT}", {"group": fake_runs.GROUP})]
    assert set(data.runs["name"]) == set(logged)
    assert (
        len(data.skipped) == 2 and "crashed" in data.skipped[0] and "test/scores" in data.skipped[1]
    )
    assert runs[4].scans == 0  # a crashed run is not downloaded
    for _, run in data.runs.iterrows():
        exp = logged[run["name"]]
        assert (run["model"], run["loss"]) == (exp["spec"]["model"], exp["spec"]["loss"])
        assert run["test/image_auroc/bottle"] == exp["summary"]["test/image_auroc/bottle"]
        hist = data.history[data.history["run_id"] == run["run_id"]].drop(columns="run_id")
        expected = pd.DataFrame(exp["history"])[list(hist.columns)]
        pd.testing.assert_frame_equal(hist.reset_index(drop=True), expected, check_dtype=False)
        scores = data.scores[data.scores["run_id"] == run["run_id"]].drop(columns="run_id")
        pd.testing.assert_frame_equal(
            scores.reset_index(drop=True), pd.DataFrame(exp["scores"]), check_dtype=False
        )


def test_api_errors_and_sweep_filter(grid):
    api = FakeApi(grid[1])
    with pytest.raises(AeLabError, match="'me/nope'"):
        load_runs("nope", api=api)
    with pytest.raises(AeLabError, match="No usable W&B runs"):
        load_runs(fake_runs.PROJECT, sweep="abc123", api=api)
    assert api.calls[-1][1] == {"sweep": "abc123"}


def test_load_runs_uses_the_api_only_online_with_credentials(grid, monkeypatch, tmp_path):
    import wandb

    monkeypatch.setattr(wandb, "Api", lambda: FakeApi(grid[1]))
    monkeypatch.setattr(runs_module, "ensure_wandb_mode", lambda: "online")
    assert load_runs(fake_runs.PROJECT).source.startswith("W&B API")
    monkeypatch.setattr(runs_module, "ensure_wandb_mode", lambda: "offline")  # no credentials
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    with pytest.raises(AeLabError, match="No W&B run folders"):
        load_runs("p")


def test_wandb_report_needs_online_and_builds_its_blocks(grid, monkeypatch):
    data = load_runs(fake_runs.PROJECT, group=fake_runs.GROUP, api=FakeApi(grid[1]))
    frame = pd.DataFrame()
    analysis = Analysis(frame, frame, frame, ["a sentence"], [], frame, {})
    data.offline_root = Path(".")  # offline data: the report is skipped with a reason
    assert "needs W&B online" in create_wandb_report(analysis, data, "me")
    wr = pytest.importorskip("wandb_workspaces.reports.v2")
    saved = []

    class FakeReport:  # records what would be saved
        def __init__(self, **kwargs):
            self.kwargs, self.url = kwargs, "https://wandb.example/report"

        def save(self):
            saved.append(self.kwargs)

    monkeypatch.setattr(wr, "Report", FakeReport)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    data.offline_root = None
    assert create_wandb_report(analysis, data, "me") == "https://wandb.example/report"
    blocks = saved[0]["blocks"]
    assert saved[0]["title"] == f"ae-lab analysis: {fake_runs.PROJECT} / {fake_runs.GROUP}"
    assert blocks[0].items == ["a sentence"] and "logger.group" in blocks[1].runsets[0].filters


# ---- a run's media read back ------------------------------------------------------------------
class FakeMediaFile:
    def __init__(self, name: str) -> None:
        self.name = name

    def download(self, root: str, exist_ok: bool = False):
        path = Path(root) / self.name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"png")
        return path.open()


class FakeMediaRun:
    def __init__(self) -> None:
        self.summary_metrics = {
            "val/reconstructions": {"_type": "image-file", "path": "media/images/v_1.png"},
            "test/reconstructions": {
                "filenames": ["media/a.png", "media/b.png"],
                "captions": ["a", "b"],
            },
        }

    def file(self, name: str) -> FakeMediaFile:
        return FakeMediaFile(name)


def test_online_media_are_downloaded_into_the_cache(tmp_path, monkeypatch):
    import wandb

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(wandb, "Api", lambda: SimpleNamespace(run=lambda path: FakeMediaRun()))
    cache = Path("reports/notebook/media/abc123")
    assert media_files("abc123", "val/reconstructions", project="p") == [
        (cache / "media/images/v_1.png", "")
    ]
    assert media_files("abc123", "test/reconstructions", project="p")[1] == (
        cache / "media/b.png",
        "b",
    )
    assert (tmp_path / cache / "media/b.png").is_file()
    with pytest.raises(AeLabError, match=r"no media at `val/latent_tsne`.*val/reconstructions"):
        media_files("abc123", "val/latent_tsne", project="p")
    with pytest.raises(AeLabError, match=r"No offline W&B run folder for run 'abc123'.*WANDB_DIR"):
        media_files("abc123", "val/reconstructions", tmp_path)


def test_offline_media_are_read_from_the_run_folder(tmp_path, monkeypatch):
    """The summary is replayed from the run's log by the analysis' reader (the last update of a
    key wins)."""
    folder = tmp_path / "wandb" / "offline-run-20250101_000000-abc123"
    (folder / "files").mkdir(parents=True)
    (folder / "run-abc123.wandb").touch()
    updates = [
        {"val/reconstructions.path": "media/v_1.png", "test/f1_max": 0.5},
        {"val/reconstructions.path": "media/v_3.png", "val/reconstructions.caption": "epoch 3"},
    ]
    records = [
        {"type": "run", "run": {"run_id": "abc123"}},
        *({"type": "summary", "summary": {"update": u}} for u in updates),
    ]
    monkeypatch.setattr(runs_module, "read_records", lambda path: records)
    assert media_files("abc123", "val/reconstructions", tmp_path) == [
        (folder / "files" / "media/v_3.png", "epoch 3")
    ]
