"""The analysis on tiny real trainings logged offline (issue 27): the figures it builds from what
the runs left (their W&B media read back by key, their best checkpoints), the tables, and all of
them logged by key to the analysis run, where the notebook reads them back."""

import dataclasses
from pathlib import Path

import pytest

from ae_lab import keys
from ae_lab.analysis.report import analyse, log_analysis_run, reconstructions_by_loss, write_report
from ae_lab.analysis.runs import load_runs, media_files, open_run
from ae_lab.training import train
from tests.compose import compose_config, tiny_overrides

pytestmark = pytest.mark.slow
PROJECT, GROUP = "readback-test", "g"
CATEGORIES = ["cable", "screw"]
LOSSES = ["l1", "ssim"]


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory, synthetic_root):
    """A folder holding `wandb/` with two tiny AE runs (L1, SSIM) trained with the W&B logger."""
    root = tmp_path_factory.mktemp("readback")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WANDB_MODE", "offline")
        mp.setenv("WANDB_DIR", str(root))
        for loss in LOSSES:
            items = dict(
                o.split("=", 1) for o in tiny_overrides(synthetic_root, root / loss, CATEGORIES)
            )
            items.pop("trainer.limit_val_batches")  # the whole val split: a t-SNE of > 4 points
            items |= {"logger": "wandb", "logger.project": PROJECT, "logger.group": GROUP}
            items |= {"loss": loss, "trainer.max_epochs": "2", "media.every_n_epochs": "1"}
            overrides = [
                f"{'++' if k.startswith('trainer.') else ''}{k}={v}" for k, v in items.items()
            ]
            train(compose_config(overrides))
    return root


@pytest.fixture(scope="module")
def data(runs_dir):
    return load_runs(PROJECT, offline_dir=runs_dir)


@pytest.fixture(scope="module")
def analysis(data):
    return analyse(data, n_boot=50)


FIGURES = {
    "analysis/val_reconstructions",
    "analysis/run_panels",
    "analysis/loss_curves_image/comparacion",
    "analysis/test_reconstructions/ae/buenas",
    "analysis/test_reconstructions/ae/defectuosas",
    *(f"analysis/error_histograms/ae/{cat}" for cat in CATEGORIES),
}


def test_figures_from_the_runs_media_and_checkpoints(analysis, data):
    assert set(analysis.figures) >= FIGURES
    assert not [w for w in analysis.warnings if "leaves out" in w], analysis.warnings
    montage = analysis.figures["analysis/val_reconstructions"]
    assert sorted(ax.get_title() for ax in montage.axes if ax.images) == ["ae · L1", "ae · SSIM"]
    panels = analysis.figures["analysis/run_panels"]
    titles = {ax.get_title() for ax in panels.axes if ax.images}
    assert {keys.VAL_RECONSTRUCTIONS, keys.VAL_LATENT_TSNE_IMAGE} <= titles
    assert f"{keys.TEST_SCORE_HISTOGRAM_IMAGES}/cable" in titles
    assert sum(t.startswith(f"{keys.TEST_RECONSTRUCTIONS} [") for t in titles) == 4
    assert "historial: train/loss, val/loss, val/l1" in titles
    defective = analysis.figures["analysis/test_reconstructions/ae/defectuosas"]
    headers = [ax.get_title() for ax in defective.axes if ax.get_title()]
    assert headers == [
        "original",
        "reconstrucción\nL1",
        "mapa de anomalía\nL1",
        "reconstrucción\nSSIM",
        "mapa de anomalía\nSSIM",
        "máscara",
    ]
    errors = analysis.figures["analysis/error_histograms/ae/screw"]
    assert [ax.get_ylabel().split("\n")[0] for ax in errors.axes if ax.get_ylabel()] == [
        "L1",
        "SSIM",
    ]
    pairs = analysis.differences
    assert len(pairs) == 1 and pairs["low"].iloc[0] <= pairs["difference"].iloc[0]
    assert list(analysis.baselines["category"]) == CATEGORIES
    assert analysis.baselines[["mean_grey", "position"]].notna().all().all()


def test_a_run_whose_checkpoint_is_not_here_is_left_out_with_a_warning(data):
    runs = data.runs.copy()
    runs.loc[runs["loss"] == "l1", "checkpoint"] = "/elsewhere/best.ckpt"  # another machine
    notes = []
    figs = reconstructions_by_loss("ae", runs, data.scores, notes)
    good = figs["analysis/test_reconstructions/ae/buenas"]
    assert [ax.get_title() for ax in good.axes if ax.get_title()] == [
        "original",
        "reconstrucción\nSSIM",
        "mapa de anomalía\nSSIM",
    ]
    (note,) = notes
    assert "ae-l1-z8" in note and "/elsewhere/best.ckpt" in note
    nowhere = dataclasses.replace(data, offline_root=data.offline_root / "missing")
    left = analyse(nowhere, n_boot=5)  # the media are not where the runs were read from
    assert "analysis/val_reconstructions" not in left.figures
    assert any("analysis/val_reconstructions leaves out" in w for w in left.warnings)


def test_the_analysis_run_logs_every_figure_and_table_by_key(analysis, data, runs_dir, tmp_path):
    index = write_report(analysis, data, tmp_path / "report")
    for name in ("differences", "baselines"):
        assert (index.parent / f"{name}.csv").is_file() and (index.parent / f"{name}.md").is_file()
    assert "Líneas base que ignoran el defecto" in index.read_text(encoding="utf-8")
    logged = log_analysis_run(analysis, data, index.parent)
    summary, _ = open_run(logged.run_id, runs_dir)
    for key in FIGURES:
        assert summary[f"{key}._type"] == "image-file", key
        ((path, _),) = media_files(logged.run_id, key, runs_dir)
        assert path.is_file() and path.stat().st_size > 10_000, key
    for key in ("analysis/differences", "analysis/baselines"):
        assert summary[f"{key}._type"] == "table-file", key
        ((path, _),) = media_files(logged.run_id, key, runs_dir)
        assert path.is_file(), key
    assert Path(index).is_file()
