"""Fault suite, analysis (issue 28): hostile run names and config values in the report, classes and
runs without an AUROC, runs still being written or copied without their media.

Already covered elsewhere (not repeated here): an empty folder, another project's runs, a crashed,
killed or test-less run (tests/test_analysis.py::test_user_errors_name_the_project_and_the_fix,
::test_crashed_killed_testless_and_foreign_runs_are_left_out), a damaged run log
(::test_a_damaged_run_log_is_skipped_with_a_warning).
"""

from __future__ import annotations

import csv
import html
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import pandas as pd
import pytest

import analyze
from ae_lab.analysis import runs as runs_module
from ae_lab.analysis import tables
from ae_lab.analysis.report import csv_safe, run_analysis, slug
from ae_lab.analysis.runs import load_runs
from ae_lab.errors import AeLabError
from tests import fake_runs
from tests.test_analysis_api import FakeApi, FakeRun

REPO = Path(__file__).resolve().parents[2]
SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'
NAMES = [SCRIPT, IMG, "../../../escaped", '=HYPERLINK("http://x","y")', "ñandú-ü 測試"]


def logged(spec: dict, name: str | None = None, drop=None) -> dict:
    """What `spec`'s run logs, renamed, with the scores rows `drop(frame)` selects left out (and
    the summary recomputed from what is left, as training would)."""
    from ae_lab.metrics import image_metrics

    out = fake_runs.logged_values(spec)
    if name is not None:
        out["name"] = out["config"]["run_name"] = name
    if drop is not None:
        scores = pd.DataFrame(out["scores"])
        scores = scores[~drop(scores)]
        out["scores"] = scores.to_dict("records")
        with pytest.warns(UserWarning, match="Skipped"):
            out["summary"] = image_metrics(scores)
    return out


def api_runs(monkeypatch, runs: list[FakeRun]) -> None:
    """`load_runs` / `run_analysis` read `runs` through the W&B API boundary (no network)."""
    import wandb

    monkeypatch.setattr(wandb, "Api", lambda: FakeApi(runs))
    monkeypatch.setattr(runs_module, "ensure_wandb_mode", lambda: "online")


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


# ---- hostile names and values -------------------------------------------------------------------
@pytest.mark.slow  # the whole report folder: ~4-5 s on a quiet 2-core machine
@pytest.mark.filterwarnings("ignore:Glyph")  # matplotlib's font lacks the CJK name: boxes, no harm
def test_report_escapes_html_stays_in_its_folder_and_defuses_csv_formulas(tmp_path, monkeypatch):
    # 20 bootstrap draws instead of 500: the intervals' numbers are not what is checked here.
    monkeypatch.setattr(tables, "auroc_intervals", partial(tables.auroc_intervals, n_boot=20))
    specs = [*fake_runs.GRID, {"model": "ae", "loss": "l2", "latent_dim": 32}]
    runs = [FakeRun(logged(spec, name)) for spec, name in zip(specs, NAMES, strict=True)]
    runs[0].config["loss"] = {"name": "<b onmouseover=alert(1)>l1</b>"}  # a config value
    for run in runs:
        run.group = f"grid{SCRIPT}"
    api_runs(monkeypatch, runs)
    out = tmp_path / "reports" / "proj"
    result = run_analysis(fake_runs.PROJECT, out_dir=out, log_to_wandb=False)
    assert result.index_html == out / "index.html" and len(result.data.runs) == len(NAMES)

    # Nothing outside the report folder but its lock file (named after the project only).
    written = [p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file()]
    outside = [p for p in written if p.parts[:2] != ("reports", "proj")]
    assert {str(p) for p in outside} <= {"reports/.proj.lock"}
    assert not (tmp_path / "escaped").exists() and not list(tmp_path.parent.glob("escaped*"))

    page = (out / "index.html").read_text(encoding="utf-8")
    assert (
        "<script" not in page.lower() and "<img src=x" not in page and "<b onmouseover" not in page
    )
    assert html.escape(SCRIPT, quote=False) in page and "ñandú-ü 測試" in page
    for interactive in out.glob("figures/*.html"):  # Plotly's pages carry the names as JSON
        text = interactive.read_text(encoding="utf-8")
        assert SCRIPT not in text and "<img src=x" not in text, interactive.name
    for src in re.findall(r'<img src="([^"]+)"', page):  # every figure link works
        assert (out / html.unescape(src)).is_file(), src

    cells = []
    for table in ("run_table", "auroc_table", "score_gaps"):
        with (out / f"{table}.csv").open(encoding="utf-8", newline="") as f:
            cells += [cell for row in csv.reader(f) for cell in row]
    formulas = [c for c in cells if c.startswith(("=", "+", "-", "@")) and not _is_number(c)]
    assert not formulas, formulas
    assert "'" + NAMES[3] in cells and "ñandú-ü 測試" in cells
    assert any(c.startswith("-") and _is_number(c) for c in cells)  # negative numbers stay numbers


def test_file_names_and_csv_cells_are_made_safe_without_merging_names():
    assert slug("analysis/histograms/ae-l1-z32") == "histograms__ae-l1-z32"  # unchanged
    assert slug("analysis/loss_curves_image/ñandú") == "loss_curves_image__ñandú"
    names = [slug(f"analysis/histograms/{n}") for n in ("a<b", "a>b", "../../x", "__.._.._x")]
    assert len(set(names)) == 4 and not any("/" in n or n in (".", "..") for n in names)
    frame = pd.DataFrame(
        {"=label": ["=1+1", "+a", "-b", "@c", "\tx", "ok", "-1.5"], "value": [-1.5] * 7}
    )
    safe = csv_safe(frame)
    assert list(safe.columns) == ["'=label", "value"]
    assert safe["'=label"].tolist() == ["'=1+1", "'+a", "'-b", "'@c", "'\tx", "ok", "'-1.5"]
    assert (safe["value"] == -1.5).all() and frame.columns[0] == "=label"  # numbers; a copy


# ---- no AUROC to report -------------------------------------------------------------------------
def test_a_class_with_only_good_test_images_gets_no_auroc_and_no_crash(monkeypatch):
    screw_defects = lambda s: (s["category"] == "screw") & (s["label"] == 1)  # noqa: E731
    api_runs(monkeypatch, [FakeRun(logged(spec, drop=screw_defects)) for spec in fake_runs.GRID])
    data = load_runs(fake_runs.PROJECT)
    auroc = tables.auroc_table(data.runs, data.scores)  # what `analyse` ranks by, without figures
    ranking = tables.ranking(data.runs, auroc, tables.score_gaps(data.runs, data.scores))
    text = "\n".join(ranking)
    assert "screw: no image AUROC" in text and "nan" not in text.lower()
    assert auroc.loc["screw"].drop(columns="best_run").isna().all().all()
    assert "bottle: best run" in text


def test_runs_without_an_image_auroc_are_skipped_and_none_left_is_refused(monkeypatch, caplog):
    """Honesty: a run whose test set had one label logged no AUROC; it is not ranked as if it had."""
    only_good = lambda s: s["label"] == 1  # noqa: E731
    good_only = [FakeRun(logged(spec, drop=only_good)) for spec in fake_runs.GRID[:2]]
    api_runs(monkeypatch, [*good_only, FakeRun(logged(fake_runs.GRID[2]))])
    with caplog.at_level(logging.WARNING, logger="ae_lab.analysis"):
        data = load_runs(fake_runs.PROJECT)
    assert data.runs["name"].tolist() == [fake_runs.run_name(fake_runs.GRID[2])]
    assert len(data.skipped) == 2 and len(caplog.records) == 2
    for line, run in zip(data.skipped, good_only, strict=True):
        assert run.name in line and "test/image_auroc" in line and "only good or only" in line
    api_runs(monkeypatch, good_only)
    with pytest.raises(AeLabError, match="No usable W&B runs") as err:
        load_runs(fake_runs.PROJECT)
    assert "image AUROC" in str(err.value) and "\n" not in str(err.value)


# ---- runs still being written, runs copied without media ---------------------------------------
WRITER = """
import sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[3])
import wandb
from tests import fake_runs

wandb_dir, gate = sys.argv[1], Path(sys.argv[2])
fake_runs.make_one(fake_runs.GRID[0], wandb_dir)
run = wandb.init(mode="offline", dir=wandb_dir, project=fake_runs.PROJECT, group=fake_runs.GROUP,
                 job_type="train", name="still-writing", config={"model": {"name": "ae"}})
for epoch in range(3):
    run.log({"epoch": epoch, "train/loss": 1.0})
(gate.parent / "live").write_text(str(Path(run.dir).parent))
deadline = time.monotonic() + 120
while not gate.exists() and time.monotonic() < deadline:
    time.sleep(0.1)
run.finish()
"""


@pytest.mark.slow
def test_analyze_skips_a_run_still_writing_and_one_copied_without_media(tmp_path, caplog):
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    gate, live = tmp_path / "gate", tmp_path / "live"
    cmd = [sys.executable, "-c", WRITER, str(tmp_path), str(gate), str(REPO)]
    writer = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not live.exists():
            assert writer.poll() is None, writer.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the writer never started its second run"
            time.sleep(0.1)
        running = Path(live.read_text())
        (finished,) = [d for d in runs_module.find_run_dirs(tmp_path) if d != running]
        copy = finished.with_name(finished.name[:-8] + "copy0000")  # what a careless copy leaves
        shutil.copytree(finished, copy, ignore=shutil.ignore_patterns("media"))
        argv = ["--project", fake_runs.PROJECT, "--offline-dir", str(tmp_path), "--no-wandb"]
        with caplog.at_level(logging.WARNING, logger="ae_lab.analysis"):
            assert analyze.main([*argv, "--out", str(tmp_path / "report")]) == 0
    finally:
        gate.touch()
        writer.wait(60)
    warned = [r.getMessage() for r in caplog.records]
    (still,) = [w for w in warned if str(running) in w]
    # Whether W&B has flushed the run record yet or not, the run is named as still running.
    assert "still running" in still and "rerun the analysis" in still.lower()
    (no_media,) = [w for w in warned if str(copy) in w]
    (table,) = (finished / "files").glob("media/table/**/*.table.json")
    assert str(copy / table.relative_to(finished)) in no_media
    assert "copy the whole folder" in no_media
    report = (tmp_path / "report" / "index.html").read_text(encoding="utf-8")
    assert fake_runs.run_name(fake_runs.GRID[0]) in report and "still-writing" not in report
