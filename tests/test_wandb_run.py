"""W&B: the mode probe (ae_lab.wandb_mode), and tiny real trainings logged offline through
SummaryWandbLogger and the media callback, read back from the runs' own files."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from ae_lab import keys
from ae_lab.callbacks import EPOCH_AXIS_KEYS, select_test
from ae_lab.data.table import scan_mvtec, split_train_val
from ae_lab.errors import AeLabError
from ae_lab.keys import CHECKPOINT_BEST, CHECKPOINT_EVALUATED
from ae_lab.training import train
from ae_lab.wandb_mode import ensure_wandb_mode
from tests.compose import compose_config, tiny_overrides

CATEGORIES = ["cable", "screw"]
SIZE = 64
WANDB = Path(sys.executable).parent / "wandb"


def overrides(root: Path, out_dir: Path, **extra: str) -> list[str]:
    """`tiny_overrides` with W&B on, 2 epochs at 64 px and media every epoch (later keys win)."""
    items = dict(o.split("=", 1) for o in tiny_overrides(root, out_dir, CATEGORIES))
    items.pop("trainer.limit_val_batches")  # the t-SNE and the grid need the whole val split
    items |= {
        "logger": "wandb",
        "data.image_size": str(SIZE),
        "data.val_fraction": "0.34",
        "model.latent_dim": "16",
        "trainer.max_epochs": "2",
        "media.every_n_epochs": "1",
        "media.tsne_every_n_epochs": "2",
        **extra,
    }
    # `++`: the Trainer's limit_* keys may be absent from conf/trainer (Lightning's defaults apply).
    return [f"{'++' if k.startswith('trainer.') else ''}{k}={v}" for k, v in items.items()]


def records(run_dir: Path) -> list[dict]:
    """Every record of the run's transaction log, as `wandb leet inspect --json` prints them."""
    (log,) = run_dir.glob("run-*.wandb")
    command = [str(WANDB), "leet", "inspect", "--json", str(log)]
    out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=60)
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def history(recs: list[dict]) -> list[dict]:
    return [r["history"]["item"] for r in recs if r["type"] == "history"]


def summary(recs: list[dict]) -> dict:
    final: dict = {}
    for r in recs:
        if r["type"] == "summary":
            final |= r["summary"].get("update", {})
    return final


def media_file(run_dir: Path, row: dict, key: str) -> Path:
    path = run_dir / "files" / row[f"{key}.path"]
    assert path.is_file(), path
    return path


def check_test_content(run_dir: Path, recs: list[dict], root: Path) -> dict:
    """The test media of one run; returns its final summary."""
    rows = [h for h in history(recs) if keys.TEST_SCORES + "._type" in h]
    assert len(rows) == 1, "test media are logged once, at the end of testing"
    row = rows[0]
    table = scan_mvtec(root, CATEGORIES)
    test = table[table["split"] == "test"]

    scores = json.loads(media_file(run_dir, row, keys.TEST_SCORES).read_text())
    # `loss`: each image's error in the run's own loss, what test/error_histograms show.
    assert scores["columns"] == [*keys.SCORE_COLUMNS, "loss"]
    logged = {r[0]: r for r in scores["data"]}
    assert len(scores["data"]) == len(logged) == len(test)
    col = {c: i for i, c in enumerate(scores["columns"])}
    for _, expected in test.iterrows():
        got = logged[expected["path"]]
        assert got[col["label"]] == expected["label"] and got[col["defect"]] == expected["defect"]
        assert got[col["category"]] == expected["category"] and math.isfinite(got[col["score"]])

    final = summary(recs)
    for category in CATEGORIES:
        assert row[f"{keys.TEST_ERROR_HISTOGRAMS}/{category}._type"] == "plotly-file"
        key = f"{keys.TEST_SCORE_HISTOGRAMS}/{category}"
        assert row[f"{key}._type"] == "plotly-file"
        fig = json.loads(media_file(run_dir, row, key).read_text())
        names = [t["name"] for t in fig["data"]]
        defects = sorted(
            test.loc[(test["category"] == category) & (test["label"] == 1), "defect"].unique()
        )
        assert names[0].startswith("good") and [n.split(" ")[0] for n in names[1:]] == defects
        for name, defect in zip(names[1:], defects, strict=True):
            auroc = float(name.split("AUROC=")[1].rstrip(")"))
            metric = final.get(keys.image_auroc_key(category, defect))
            if metric is not None:  # the legend and the logged metric agree
                assert auroc == pytest.approx(metric, abs=1e-3), (category, defect)

    assert row[f"{keys.TEST_RECONSTRUCTIONS}._type"] == "images/separated"
    picked = test.reset_index(drop=True)
    picked = picked.loc[select_test(picked, 16)]
    n_picked = len(picked)
    assert row[f"{keys.TEST_RECONSTRUCTIONS}.count"] == n_picked
    captions = row[f"{keys.TEST_RECONSTRUCTIONS}.captions"]
    assert len(captions) == n_picked and all("score" in c for c in captions)
    assert sum("| good |" in c for c in captions) == (picked["label"] == 0).sum()
    for name in set(row[f"{keys.TEST_RECONSTRUCTIONS}.filenames"]):
        assert Image.open(run_dir / "files" / name).size == (4 * (SIZE + 2) + 2, SIZE + 4)
    assert row[f"{keys.TEST_LATENT_TSNE}._type"] == "plotly-file"
    tsne = json.loads(media_file(run_dir, row, keys.TEST_LATENT_TSNE).read_text())
    assert sum(len(t["x"]) for t in tsne["data"]) == len(test)

    assert 0.0 <= final[keys.TEST_IMAGE_AUROC] <= 1.0
    # Test scalars live in the summary only: no one-point history panels in the workspace.
    assert not [k for h in history(recs) for k in h if k.startswith("test/") and "." not in k]
    for category in CATEGORIES:
        key = f"{keys.TEST_SCORE_HISTOGRAM_IMAGES}/{category}"
        assert row[f"{key}._type"] == "image-file"
        assert Image.open(media_file(run_dir, row, key)).size[0] > 300
    for category in CATEGORIES:
        assert keys.image_auroc_key(category) in final
    assert Path(final[CHECKPOINT_EVALUATED]).is_file()
    debug_log = (run_dir / "logs" / "debug.log").read_text()
    assert "less than the current step" not in debug_log
    return final


@pytest.mark.slow
def test_offline_run_logs_every_media_key_and_evaluation_reuses_them(
    synthetic_root, tmp_path, monkeypatch
):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb_dir"))
    (tmp_path / "wandb_dir").mkdir()
    result = train(compose_config(overrides(synthetic_root, tmp_path / "run")))
    run_dir = Path(result["wandb_dir"])
    assert run_dir.name.startswith("offline-run-")
    recs = records(run_dir)

    run = next(r["run"] for r in recs if r["type"] == "run")
    assert run["display_name"] == "ae-ssim-z16"
    step_metrics = {
        r["metric"]["name"]: r["metric"].get("step_metric")
        for r in recs
        if r["type"] == "metric" and "name" in r["metric"]
    }
    for key in EPOCH_AXIS_KEYS:
        assert step_metrics.get(key) == keys.EPOCH, key
    rows = history(recs)
    assert sorted(h[keys.EPOCH] for h in rows if keys.VAL_LOSS in h) == [0, 1]
    recon_rows = [h for h in rows if f"{keys.VAL_RECONSTRUCTIONS}._type" in h]
    assert [h[keys.EPOCH] for h in recon_rows] == [0, 1]  # every epoch; none repeated at the end
    table = scan_mvtec(synthetic_root, CATEGORIES)
    n_val = (split_train_val(table, 0.34, 42)["split"] == "val").sum()
    n, ncol = min(16, n_val), min(8, n_val)
    blocks = -(-n // ncol)
    expected = (ncol * (SIZE + 2) + 2, blocks * (2 * (SIZE + 2) + 2) + (blocks - 1) * 8)
    for h in recon_rows:
        assert "originals" in h[f"{keys.VAL_RECONSTRUCTIONS}.caption"]
        png = media_file(run_dir, h, keys.VAL_RECONSTRUCTIONS)
        assert Image.open(png).size == expected
    tsne_rows = [h for h in rows if f"{keys.VAL_LATENT_TSNE}._type" in h]
    assert [h[keys.EPOCH] for h in tsne_rows] == [1]
    (tsne_row,) = tsne_rows
    assert tsne_row[f"{keys.VAL_LATENT_TSNE}._type"] == "plotly-file"
    tsne_table = json.loads(media_file(run_dir, tsne_row, keys.VAL_LATENT_TSNE_TABLE).read_text())
    assert (
        tsne_table["columns"] == ["x", "y", "category", "path"] and len(tsne_table["data"]) == n_val
    )

    assert Image.open(media_file(run_dir, tsne_row, keys.VAL_LATENT_TSNE_IMAGE)).size[0] > 300
    (panel,) = [h for h in rows if f"{keys.TRAIN_VAL_LOSS}_table._type" in h]  # one chart, both
    chart = json.loads(media_file(run_dir, panel, f"{keys.TRAIN_VAL_LOSS}_table").read_text())
    assert {r[1] for r in chart["data"]} == {keys.TRAIN_LOSS, keys.VAL_LOSS}
    assert sorted({r[0] for r in chart["data"]}) == [0, 1]

    final = check_test_content(run_dir, recs, synthetic_root)
    assert final[CHECKPOINT_BEST] == result["best_checkpoint"]

    again = train(
        compose_config(
            overrides(
                synthetic_root,
                tmp_path / "eval",
                train="false",
                ckpt_path=result["last_checkpoint"],
            )
        )
    )
    eval_dir = Path(again["wandb_dir"])
    assert eval_dir != run_dir
    eval_recs = records(eval_dir)
    assert not [h for h in history(eval_recs) if f"{keys.VAL_RECONSTRUCTIONS}._type" in h]
    eval_final = check_test_content(eval_dir, eval_recs, synthetic_root)
    assert eval_final[CHECKPOINT_EVALUATED] == result["last_checkpoint"]


def test_wandb_without_network_or_key_logs_offline_and_says_why(monkeypatch, capsys):
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.delenv("WANDB_MODE")
    assert ensure_wandb_mode() == "offline" and os.environ["WANDB_MODE"] == "offline"
    out = capsys.readouterr().out
    assert "does not answer" in out and "wandb sync" in out
    monkeypatch.delenv("WANDB_API_KEY")
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.setenv("NETRC", os.devnull)
    assert ensure_wandb_mode() == "offline"
    assert "no W&B credentials found" in capsys.readouterr().out
    monkeypatch.setenv("WANDB_MODE", "online")  # asked for explicitly: fail with the fix
    with pytest.raises(AeLabError, match=r"wandb login.*WANDB_MODE=offline.*logger=none"):
        ensure_wandb_mode()
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert ensure_wandb_mode() == "disabled" and not capsys.readouterr().out


@pytest.mark.slow
def test_no_validation_images_with_wandb_keeps_the_checkpoint(tiny_mvtec, tmp_path, caplog):
    base = [
        o for o in tiny_overrides(tiny_mvtec, tmp_path, ["widget", "screw"]) if o != "logger=none"
    ]
    cfg = compose_config([*base, "logger=wandb", "data.val_fraction=0", "media.n_images=4"])
    result = train(cfg)
    assert Path(result["last_checkpoint"]).is_file() and result["wandb_mode"] == "offline"
    assert 0.0 <= result["test/image_auroc"] <= 1.0
    skipped = [r for r in caplog.records if "validation media skipped" in r.getMessage()]
    assert len(skipped) == 1
