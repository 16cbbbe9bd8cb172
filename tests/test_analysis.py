"""The analysis on real W&B offline runs (tests/fake_runs.py): frames, tables, figures, report, errors."""

import logging
import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

import analyze
from ae_lab import figures as figs
from ae_lab import keys
from ae_lab.analysis import tables
from ae_lab.analysis.report import analyse
from ae_lab.analysis.runs import find_run_dirs, load_runs, read_records
from ae_lab.errors import AeLabError
from tests import fake_runs

pytestmark = pytest.mark.slow
GRID_NAMES = {fake_runs.run_name(s) for s in fake_runs.GRID}


@pytest.fixture(scope="module")
def wandb_root(tmp_path_factory):
    """A folder holding `wandb/` with the grid, a crashed, a killed, a test-less and a foreign run."""
    root = tmp_path_factory.mktemp("wandb_runs")
    logged = fake_runs.make_runs(root)
    return root, {v["name"]: v for k, v in logged.items() if k in GRID_NAMES}


@pytest.fixture(scope="module")
def data(wandb_root):
    return load_runs(fake_runs.PROJECT, offline_dir=wandb_root[0] / "wandb")


@pytest.fixture(scope="module")
def logged(wandb_root):
    return wandb_root[1]


def test_runs_frame_holds_the_grid_with_config_and_summary(data, logged):
    assert set(data.runs["name"]) == GRID_NAMES
    assert not [c for c in data.runs.columns if "." in c]  # no media metadata (`test/scores.nrows`)
    for _, run in data.runs.iterrows():
        spec = logged[run["name"]]["spec"]
        assert (run["model"], run["loss"], run["latent_dim"]) == (
            spec["model"],
            spec["loss"],
            spec["latent_dim"],
        )
        assert run["group"] == fake_runs.GROUP and run["state"] == "finished"
        for key, value in logged[run["name"]]["summary"].items():
            assert run[key] == pytest.approx(value, abs=1e-12)


def test_history_and_scores_equal_what_the_runs_logged(data, logged):
    for run_id, name in zip(data.runs["run_id"], data.runs["name"], strict=True):
        hist = data.history[data.history["run_id"] == run_id].drop(columns="run_id")
        expected = pd.DataFrame(logged[name]["history"])[list(hist.columns)]
        pd.testing.assert_frame_equal(hist.reset_index(drop=True), expected, check_dtype=False)
        scores = data.scores[data.scores["run_id"] == run_id].drop(columns="run_id")
        exp_scores = pd.DataFrame(logged[name]["scores"])
        pd.testing.assert_frame_equal(scores.reset_index(drop=True), exp_scores, check_dtype=False)


def test_crashed_killed_testless_and_foreign_runs_are_left_out(data, wandb_root, caplog):
    skipped = "\n".join(data.skipped)
    assert "ae-l2-z16" in skipped and "exit code 1" in skipped  # finish(exit_code=1)
    assert "ae-l2-z8" in skipped and keys.TEST_SCORES in skipped  # no test stage
    assert "no run record" in skipped  # os._exit before W&B flushed anything
    assert len(data.skipped) == 3  # the other project's run is filtered, not skipped
    with caplog.at_level(logging.WARNING, logger="ae_lab.analysis"):
        load_runs(fake_runs.PROJECT, offline_dir=wandb_root[0])  # the parent of wandb/ works too
    assert sum("skipped" in r.getMessage() for r in caplog.records) == 3


def test_run_table_numbers(data, logged):
    table = tables.run_table(data.runs, data.history)
    for _, row in table.iterrows():
        hist = pd.DataFrame(logged[row["label"]]["history"])
        assert row["final_train_loss"] == hist["train/loss"].iloc[-1]
        assert row["best_val_loss"] == hist["val/loss"].min()
        assert row["best_val_loss_epoch"] == hist["val/loss"].idxmin() == 1
        assert row["final_val/one_minus_ssim"] == hist["val/one_minus_ssim"].iloc[-1]
        summary = logged[row["label"]]["summary"]
        assert row[keys.image_auroc_key("screw")] == summary["test/image_auroc/screw"]


def test_auroc_table_matches_the_summaries_and_marks_the_best(data, logged):
    table = tables.auroc_table(data.runs, data.scores)
    assert tables.auroc_mismatches(data.runs, table) == []
    for (cat, defect), row in table.iterrows():
        key = keys.image_auroc_key(cat, None if defect == tables.ALL else defect)
        values = {name: logged[name]["summary"][key] for name in GRID_NAMES}
        assert row[list(values)].to_dict() == pytest.approx(values)
        assert values[row["best_run"]] == max(values.values())
    tampered = data.runs.assign(**{"test/image_auroc/bottle": 0.123})
    assert len(tables.auroc_mismatches(tampered, table)) == len(data.runs)


def test_auroc_intervals_hold_each_runs_auroc(data, logged):
    intervals = tables.auroc_intervals(data.runs, data.scores, n_boot=50)
    assert list(intervals.columns) == ["label", "model", "loss", "auroc", "low", "high"]
    assert sorted(intervals["label"]) == sorted(GRID_NAMES)
    for _, row in intervals.iterrows():
        assert row["auroc"] == pytest.approx(logged[row["label"]]["summary"]["test/image_auroc"])
        assert row["low"] <= row["auroc"] <= row["high"] and row["high"] - row["low"] < 0.5
    again = tables.auroc_intervals(data.runs, data.scores, n_boot=50)
    pd.testing.assert_frame_equal(intervals, again)  # seeded


def test_histograms_of_each_architectures_best_run(data, logged):
    result = analyse(data)
    best = result.figures["analysis/histograms/best_per_architecture"]
    per_run = sum(1 + len(d) for d in fake_runs.CLASSES.values())
    assert len(best.data) == 2 * per_run  # ae and unet, their best run each
    for model in ("ae", "unet"):
        names = [n for n in GRID_NAMES if n.startswith(f"{model}-")]
        top = max(names, key=lambda n: logged[n]["summary"]["test/image_auroc"])
        assert any(top in a.text for a in best.layout.annotations)
        expected = {f"{top} {c}: good (n={fake_runs.N_GOOD})" for c in fake_runs.CLASSES}
        for cat, defects in fake_runs.CLASSES.items():
            for d in defects:
                auroc = logged[top]["summary"][keys.image_auroc_key(cat, d)]
                expected.add(f"{top} {cat}: {d} (n={fake_runs.N_DEFECT}, AUROC={auroc:.3f})")
        assert expected <= {t.name for t in best.data}
    # One loss-curve figure per architecture of the grid, besides the histograms and heatmap.
    assert set(result.figures) >= {
        "analysis/histograms/best_per_architecture",
        "analysis/loss_curves_image/ae",
        "analysis/loss_curves_image/unet",
        "analysis/auroc_heatmap_image",
    }
    assert "analysis/loss_curves_image/vae" not in result.figures  # no vae run in this grid


def test_loss_curves_one_colour_per_loss(data, logged):
    fig = figs.loss_curves(data.runs, data.history, "unet")
    left, right = fig.axes[:2]
    assert len(left.lines) == 4 and len(right.lines) == 2  # (train, val) x 2 losses; val/l1
    colours = {line.get_label(): line.get_color() for line in right.lines}
    assert colours["l1"] != colours["ssim"]
    val_l1 = [h["val/l1"] for h in logged["unet-l1-z32"]["history"]]
    assert list(right.lines[0].get_ydata()) == val_l1


def test_ranking_follows_the_numbers(data, logged):
    table = tables.auroc_table(data.runs, data.scores)
    gaps = tables.score_gaps(data.runs, data.scores)
    text = "\n".join(tables.ranking(data.runs, table, gaps))
    for model in ("ae", "unet"):
        names = [n for n in GRID_NAMES if n.startswith(f"{model}-")]
        top = max(names, key=lambda n: logged[n]["summary"]["test/image_auroc"])
        assert f"{model}: best loss {logged[top]['spec']['loss']};" in text
    small = set()  # recomputed here: gap of the mean score in std of the good scores
    for name in ("unet-l1-z32", "unet-ssim-z32"):
        sc = pd.DataFrame(logged[name]["scores"])
        for cat, part in sc.groupby("category"):
            good = part.loc[part["label"] == 0, "score"]
            for defect, bad in part[part["label"] == 1].groupby("defect"):
                if (bad["score"].mean() - good.mean()) / np.std(good, ddof=1) < 1.0:
                    small.add(f"{cat}/{defect}")
    unet_line = text.splitlines()[-1]
    mentioned = {
        f"{c}/{d}" for c, ds in fake_runs.CLASSES.items() for d in ds if f"{c}/{d}" in unet_line
    }
    assert small and mentioned == small


def test_analyze_writes_the_report_and_an_analysis_run(wandb_root, tmp_path, monkeypatch, capsys):
    root = wandb_root[0]
    monkeypatch.setenv("WANDB_MODE", "offline")
    before = set(find_run_dirs(root))
    argv = ["--project", fake_runs.PROJECT, "--group", fake_runs.GROUP, "--offline-dir", str(root)]
    stale = tmp_path / "rep" / "figures" / "stale.png"  # from an earlier analysis: must go
    stale.parent.mkdir(parents=True)
    stale.touch()
    assert analyze.main([*argv, "--out", str(tmp_path / "rep"), "--report"]) == 0
    assert not stale.exists() and [p.name for p in tmp_path.iterdir() if p.is_dir()] == ["rep"]
    out = capsys.readouterr().out
    assert str(tmp_path / "rep" / "index.html") in out and "needs W&B online" in out
    index = (tmp_path / "rep" / "index.html").read_text()
    assert "<h2>Resultado con incertidumbre</h2>" in index and "IC95 inf." in index
    assert "kaleido" not in index and 'class="plotly-graph-div"' not in index  # static, linked
    for src in re.findall(r'<img src="([^"]+)"', index):
        assert (tmp_path / "rep" / src).is_file(), src
    assert (tmp_path / "rep" / "plotly.min.js").stat().st_size > 1_000_000
    auroc_csv = pd.read_csv(tmp_path / "rep" / "auroc_table.csv")
    assert "best_run" in auroc_csv and len(auroc_csv) == 6
    (new,) = set(find_run_dirs(root)) - before
    assert str(new) in out
    run_record = next(
        r["run"] for r in read_records(next(new.glob("*.wandb"))) if r["type"] == "run"
    )
    assert run_record["job_type"] == "analysis" and run_record["run_group"] == fake_runs.GROUP
    media = {
        p.relative_to(new / "files" / "media").parts[:3] for p in new.glob("files/media/**/*.*")
    }
    assert ("images", "analysis", "loss_curves_image") in media
    assert ("plotly", "analysis", "histograms") in media and ("table", "analysis") in {
        m[:2] for m in media
    }
    assert len(load_runs(fake_runs.PROJECT, offline_dir=root).runs) == 4  # analysis run ignored


def test_user_errors_name_the_project_and_the_fix(wandb_root, tmp_path, capsys):
    root = wandb_root[0]
    with pytest.raises(AeLabError, match=r"'no-such-project'.*make demo"):
        load_runs("no-such-project", offline_dir=root)
    with pytest.raises(AeLabError, match="group 'nope'"):
        load_runs(fake_runs.PROJECT, group="nope", offline_dir=root)
    (tmp_path / "empty").mkdir()
    rc = analyze.main(["--project", "x", "--offline-dir", str(tmp_path / "empty"), "--no-wandb"])
    err = capsys.readouterr().err
    assert rc == 2 and "No W&B run folders" in err and "Traceback" not in err
    missing = tmp_path / "MISSING"
    rc = analyze.main(["--project", "x", "--offline-dir", str(missing), "--no-wandb"])
    err = capsys.readouterr().err
    assert rc == 2 and str(missing) in err and "Traceback" not in err


def test_a_damaged_run_log_is_skipped_with_a_warning(wandb_root, data, tmp_path, caplog):
    """5 KB overwritten in the middle of a `.wandb` file must not become a NaN row."""
    # Two usable grid runs (folders sort by start time, so the crashed or foreign ones can come first).
    ids = tuple(f"-{run_id}" for run_id in data.runs["run_id"])
    good = [d for d in find_run_dirs(wandb_root[0]) if d.name.endswith(ids)]
    for run_dir in good[:2]:
        shutil.copytree(run_dir, tmp_path / "wandb" / run_dir.name)
    damaged = next((tmp_path / "wandb" / good[0].name).glob("*.wandb"))
    raw = bytearray(damaged.read_bytes())
    middle = len(raw) // 2
    raw[middle - 2500 : middle + 2500] = np.random.default_rng(0).bytes(5000)
    damaged.write_bytes(bytes(raw))
    with caplog.at_level(logging.WARNING, logger="ae_lab.analysis"):
        data = load_runs(fake_runs.PROJECT, offline_dir=tmp_path)
    assert len(data.runs) == 1 and data.runs["name"].notna().all()
    assert any(
        damaged.parent.name in r.getMessage() and "damaged" in r.getMessage()
        for r in caplog.records
    )


def test_runs_on_different_classes_are_ranked_with_a_warning():
    runs = pd.DataFrame({"classes": ["cable", "screw", "cable"]})
    (warning,) = tables.class_warning(runs)
    assert "different classes (cable, screw)" in warning
    assert tables.class_warning(runs.assign(classes="cable+screw")) == []


def test_runs_of_one_class_each_are_labelled_by_their_class():
    """sweeps/grid_per_class.yaml: the same model and loss once per class, told apart by class."""
    import pandas as pd

    from ae_lab.analysis.runs import _classes, _unique_labels

    assert _classes(["cable", "screw"]) == "cable+screw" and _classes("['screw']") == "screw"
    runs = pd.DataFrame(
        {"name": ["ae-l2-z128"] * 2, "run_id": ["a", "b"], "classes": ["cable", "screw"]}
    )
    assert _unique_labels(runs) == ["ae-l2-z128 [cable]", "ae-l2-z128 [screw]"]
    joint = runs.assign(classes="cable+screw", name=["ae-l2-z128", "unet-l2-z128"])
    assert _unique_labels(joint) == ["ae-l2-z128", "unet-l2-z128"]


def test_report_reads_well_in_headless_chromium(wandb_root, tmp_path, monkeypatch):
    """The page renders (a non-blank screenshot) and nothing overflows the page's width."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium on PATH (apt-get install chromium): the render is not checked")
    from PIL import Image

    monkeypatch.setenv("WANDB_MODE", "offline")
    argv = ["--project", fake_runs.PROJECT, "--group", fake_runs.GROUP, "--no-wandb"]
    assert analyze.main([*argv, "--offline-dir", str(wandb_root[0]), "--out", str(tmp_path)]) == 0
    page = tmp_path / "index.html"
    probe = tmp_path / "probe.html"  # the page plus a script that writes the overflow into the DOM
    script = (
        "<script>addEventListener('load',()=>document.body.setAttribute('data-overflow',"
        "document.documentElement.scrollWidth - innerWidth))</script></body>"
    )
    probe.write_text(page.read_text().replace("</body>", script))
    flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1280,2400"]
    run = dict(capture_output=True, text=True, timeout=120, check=True)
    dom = subprocess.run([*flags, "--dump-dom", probe.as_uri()], **run).stdout
    overflow = re.search(r'data-overflow="(-?\d+)"', dom)
    assert overflow and int(overflow.group(1)) <= 0, "the page is wider than the window"
    shot = tmp_path / "shot.png"
    subprocess.run([*flags, f"--screenshot={shot}", page.as_uri()], **run)
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.std() > 10 and (pixels < 128).mean() > 0.01  # text and figures, not blank


def test_unet_sentence_says_when_defects_score_below_the_good_images():
    gaps = pd.DataFrame(
        {
            "model": ["unet", "unet", "ae"],
            "label": ["unet-l1", "unet-l1", "ae-l1"],
            "category": ["transistor", "capsule", "transistor"],
            "defect": ["misplaced", "crack", "misplaced"],
            "gap_std": [-1.1, 0.4, 12.0],
            "auroc": [0.17, 0.6, 1.0],
        }
    )
    (line,) = tables.unet_sentences(gaps)
    assert "1 of them score *lower* than the good images" in line
    assert "transistor/misplaced" in line and "capsule/crack" in line
    assert "about as well" not in line
    (line,) = tables.unet_sentences(gaps.assign(gap_std=[0.2, 0.4, 12.0]))
    assert "lower" not in line
