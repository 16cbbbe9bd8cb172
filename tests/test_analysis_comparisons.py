"""The analysis' comparisons between runs (issue 27): the paired bootstrap of an AUROC difference,
the baselines that ignore the defect, the test images every loss is shown on, and the figures
that put runs side by side. Frames are built here; the runs they stand for need not exist."""

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import ndimage
from sklearn.metrics import roc_auc_score

from ae_lab import figures, keys
from ae_lab.analysis import runs as runs_module
from ae_lab.analysis import tables
from ae_lab.analysis.baselines import STATISTICS, baseline_aurocs, image_statistics
from ae_lab.metrics import auroc, bootstrap_class_mean_auroc, class_mean_auroc

CLASSES = {"cable": ("bent_wire", "cut_inner"), "screw": ("scratch_head", "thread_side")}
N_GOOD, N_DEFECT = 10, 5


def score_rows(shift: dict[str, float], seed: int) -> pd.DataFrame:
    """One run's scores table: good images around 0, each defect type shifted by `shift[defect]`
    (default 1); the same paths for every run."""
    rng = np.random.default_rng(seed)
    rows = []
    for cat, defects in CLASSES.items():
        for defect, n in (("good", N_GOOD), *((d, N_DEFECT) for d in defects)):
            for i in range(n):
                score = rng.normal(0.0, 1.0) + (defect != "good") * shift.get(defect, 1.0)
                path = f"{cat}/test/{defect}/{i:03d}.png"
                rows.append((path, cat, defect, int(defect != "good"), score))
    frame = pd.DataFrame(rows, columns=["path", "category", "defect", "label", "score"])
    return frame.assign(loss=frame["score"] * 0.01 + 0.05)


def grid(specs: dict[str, tuple[str, str, pd.DataFrame]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(runs, scores) as `load_runs` gives them, from run_id -> (model, loss, scores table)."""
    scores = pd.concat([s.assign(run_id=r) for r, (_, _, s) in specs.items()], ignore_index=True)
    rows = []
    for run_id, (model, loss, part) in specs.items():
        classes = [p for _, p in part.groupby("category")]
        value = class_mean_auroc(
            [p["label"].to_numpy() for p in classes], [p["score"].to_numpy() for p in classes]
        )
        rows.append((run_id, f"{model}-{loss}", model, loss, value))
    columns = ["run_id", "label", "model", "loss", keys.TEST_IMAGE_AUROC]
    return pd.DataFrame(rows, columns=columns), scores


# ---- the paired bootstrap --------------------------------------------------------------------
def test_paired_bootstrap_holds_the_difference_and_is_zero_between_identical_runs():
    strong = score_rows({}, seed=0).assign(score=lambda f: f["score"] + 1.5 * f["label"])
    weak = score_rows({}, seed=1)
    runs, scores = grid(
        {
            "a": ("ae", "ssim", strong),
            "b": ("ae", "l1", weak),
            "c": ("ae", "l2", strong.copy()),  # the same scores as a: nothing to tell apart
            "d": ("unet", "ssim", score_rows({}, seed=2)),
        }
    )
    table = tables.auroc_differences(runs, scores, n_boot=200)
    assert list(table.columns) == [
        "comparison",
        "run_a",
        "run_b",
        "difference",
        "low",
        "high",
        "p_le_0",
    ]
    pairs = {(r.run_a, r.run_b): r for r in table.itertuples()}
    # Three ae runs: three pairs of losses; the best runs of the two architectures (ae-l2 and
    # ae-ssim tie: the first label wins).
    assert len(table) == 4 and (table["comparison"] == "pérdidas de ae").sum() == 3
    (best,) = table[table["comparison"] == "mejor de cada arquitectura"].itertuples()
    assert (best.run_a, best.run_b) == ("ae-l2", "unet-ssim")
    same = pairs[("ae-l2", "ae-ssim")]
    assert (same.difference, same.low, same.high, same.p_le_0) == (0.0, 0.0, 0.0, 1.0)
    apart = pairs[("ae-ssim", "ae-l1")]
    assert apart.low <= apart.difference <= apart.high and apart.difference > 0.1
    assert apart.p_le_0 < 0.05  # the better run first: its difference is positive
    assert (table["difference"] >= 0).all()
    pd.testing.assert_frame_equal(table, tables.auroc_differences(runs, scores, n_boot=200))


def test_the_bootstrap_resamples_runs_on_the_same_images_alike():
    part = score_rows({}, seed=3)
    labels = [p["label"].to_numpy() for _, p in part.groupby("category")]
    values = [p["score"].to_numpy() for _, p in part.groupby("category")]
    other = [v * 2.0 + 1.0 for v in values]  # the same order of the images: the same AUROCs
    reps = bootstrap_class_mean_auroc(labels, values, n_boot=50)
    assert reps.shape == (50,) and np.ptp(reps) > 0
    np.testing.assert_array_equal(reps, bootstrap_class_mean_auroc(labels, other, n_boot=50))
    assert not np.array_equal(reps, bootstrap_class_mean_auroc(labels, values, 50, seed=1))


def test_runs_on_different_images_are_not_paired():
    moved = score_rows({}, seed=1).assign(path=lambda f: "elsewhere/" + f["path"])
    runs, scores = grid({"a": ("ae", "l1", score_rows({}, 0)), "b": ("ae", "l2", moved)})
    assert tables.auroc_differences(runs, scores, n_boot=20).empty


def test_auroc_keeps_the_order_of_scores_far_outside_zero_one():
    """Scores far from [0, 1] rank as they are: no sigmoid squashes the large ones into ties."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    values = rng.normal(120.0, 10.0, 200) + 5.0 * labels  # grey levels, Laplacian variances
    assert auroc(labels, values) == pytest.approx(roc_auc_score(labels, values), abs=1e-6)
    assert auroc(labels, -values) == pytest.approx(1 - roc_auc_score(labels, values), abs=1e-6)
    assert auroc(labels, np.full(200, 80.0)) == 0.5  # all tied: chance, not NaN


# ---- baselines that ignore the defect ----------------------------------------------------------
def test_defective_images_brighter_than_good_ones_give_a_mean_grey_auroc_of_one(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for label, level, n in ((0, 100, 8), (1, 150, 6)):
        for i in range(n):
            path = tmp_path / f"{label}_{i}.png"
            noise = rng.normal(0, 30, (40, 40, 3))  # noise larger than its mean: grey std overlaps
            Image.fromarray(np.clip(level + noise, 0, 255).astype(np.uint8)).save(path)
            rows.append((str(path), "widget", "good" if label == 0 else "stain", label))
    rows.append((str(tmp_path / "gone.png"), "widget", "stain", 1))  # trained on another machine
    scores = pd.DataFrame(rows, columns=["path", "category", "defect", "label"])
    table, problems = baseline_aurocs(pd.concat([scores, scores]), 32)  # two runs, same images
    assert list(table.columns) == ["category", "n_good", "n_defect", *STATISTICS]
    (row,) = table.itertuples()
    assert (row.category, row.n_good, row.n_defect, row.mean_grey) == ("widget", 8, 6, 1.0)
    assert 0.0 < row.noise < 1.0
    (problem,) = problems
    assert "1 of 15 test images" in problem and "gone.png" in problem


def test_image_statistics_measure_what_they_are_named_after():
    flat = np.full((64, 64, 3), 200, np.uint8)
    square = flat.copy()
    square[24:40, 24:40] = 40  # a dark object in the middle
    shifted = np.roll(square, (10, 0), axis=(0, 1))
    noise = np.random.default_rng(0).normal(0, 20, flat.shape)
    noisy = np.clip(100 + noise, 0, 255).astype(np.uint8)
    blurred = ndimage.gaussian_filter(square.astype(float), (3, 3, 0)).astype(np.uint8)
    stats = {
        "square": image_statistics(square),
        "shifted": image_statistics(shifted),
        "noisy": image_statistics(noisy),
        "blurred": image_statistics(blurred),
    }
    assert stats["square"]["position"] < 0.6
    assert 9.0 < stats["shifted"]["position"] < 11.0  # 10 px down
    assert stats["noisy"]["noise"] > 8.0 and image_statistics(flat)["noise"] == 0.0
    assert stats["blurred"]["focus"] < stats["square"]["focus"] / 5
    assert stats["square"]["mean_grey"] < 200 and image_statistics(flat)["grey_std"] == 0.0


# ---- the test images every loss is shown on ----------------------------------------------------
def test_comparison_images_are_shared_by_the_runs_and_come_from_the_hardest_defects():
    hard = {"bent_wire": 3.0, "cut_inner": 0.2, "scratch_head": 0.1, "thread_side": 3.0}
    first, second = score_rows(hard, 0), score_rows(hard, 1)
    second = second[second["path"] != "cable/test/good/000.png"]  # scored by one run only
    runs, scores = grid({"a": ("ae", "l1", first), "b": ("ae", "ssim", second)})
    chosen = tables.comparison_images(runs, scores, n=4)
    assert list(chosen.columns) == ["path", "category", "defect", "label"]
    assert list(chosen["label"]) == [0, 0, 0, 0, 1, 1, 1, 1]
    assert "cable/test/good/000.png" not in set(chosen["path"])
    good = chosen[chosen["label"] == 0]
    assert good["category"].value_counts().to_dict() == {"cable": 2, "screw": 2}
    bad = chosen[chosen["label"] == 1]
    assert list(bad["category"]) == ["cable", "cable", "screw", "screw"]  # class by class
    # Within a class its types in turn, the hardest (lowest mean AUROC over the runs) first.
    assert list(bad["defect"]) == ["cut_inner", "bent_wire", "scratch_head", "thread_side"]
    one_each = tables.comparison_images(runs, scores, n=2)
    assert list(one_each.loc[one_each["label"] == 1, "defect"]) == ["cut_inner", "scratch_head"]
    again = tables.comparison_images(runs.iloc[::-1], scores, n=4)
    assert set(again["path"]) == set(chosen["path"])


# ---- figures that put runs side by side --------------------------------------------------------
def test_error_histograms_have_a_row_per_loss_and_a_column_per_defect():
    runs, scores = grid(
        {"a": ("ae", "ssim", score_rows({}, 0)), "b": ("ae", "l1", score_rows({}, 1))}
    )
    fig = figures.loss_histograms(scores, runs.sort_values("loss"), "screw")
    axes = fig.axes
    assert len(axes) == 2 * len(CLASSES["screw"])
    assert [ax.get_ylabel().split("\n")[0] for ax in axes[::2]] == ["L1", "SSIM"]
    part = scores[(scores["run_id"] == "b") & (scores["category"] == "screw")]
    both = part[part["defect"].isin(["good", "scratch_head"])]
    value = roc_auc_score(both["label"], both["loss"])
    assert axes[0].get_title() == f"scratch_head: AUROC {value:.2f}"
    assert "buenas (gris) frente a cada tipo de defecto" in fig.get_suptitle()


def test_loss_curves_comparison_puts_every_architecture_on_each_losss_axes():
    runs = pd.DataFrame(
        {
            "run_id": ["a", "b", "c", "d"],
            "model": ["ae", "ae", "unet", "unet"],
            "loss": ["l1", "ssim", "l1", "ssim"],
        }
    )
    history = pd.DataFrame(
        [
            {"run_id": r, keys.EPOCH: e, keys.TRAIN_LOSS: 1 / (e + 1), keys.VAL_LOSS: 1 / (e + 2)}
            for r in runs["run_id"]
            for e in range(3)
        ]
    )
    fig = figures.loss_curves_comparison(runs, history)
    assert [ax.get_title() for ax in fig.axes] == ["pérdida L1", "pérdida SSIM"]
    for ax in fig.axes:
        assert ax.get_yscale() == "log"
        labels = [line.get_label() for line in ax.lines]
        assert labels == ["ae (entren.)", "ae (val.)", "unet (entren.)", "unet (val.)"]
        assert [line.get_linestyle() for line in ax.lines] == ["-", "--", "-", "--"]


def test_montage_and_reconstruction_comparison_have_the_panels_asked_for():
    image = np.zeros((20, 40, 3), np.uint8)
    tiles = [[("ae · L1", image), None, ("ae · SSIM", image)], [("unet · L1", image)]]
    fig = figures.image_montage(tiles, "título")
    shown = [ax for ax in fig.axes if ax.images]
    assert [ax.get_title() for ax in shown] == ["ae · L1", "ae · SSIM", "unet · L1"]
    assert len(fig.axes) == 4  # the empty cell keeps its place

    n = 3
    images = np.zeros((n, 16, 16, 3), np.uint8)
    models = {name: (images, np.random.default_rng(0).random((n, 16, 16))) for name in ("L1", "L2")}
    titles = ["a", "b", "c"]
    fig = figures.reconstruction_comparison(images, None, models, titles, vmax=0.5)
    grid_axes = [ax for ax in fig.axes if ax.images and ax.get_label() != "<colorbar>"]
    assert len(grid_axes) == n * (1 + 2 * len(models))  # no mask column without masks
    maps = [ax.images[0] for ax in grid_axes if ax.images[0].get_cmap().name == "inferno"]
    assert len(maps) == n * len(models) and {m.get_clim() for m in maps} == {(0.0, 0.5)}
    bars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(bars) == 1  # one colour scale, one bar
    with_masks = figures.reconstruction_comparison(images, images[..., 0], models, titles, 0.5)
    assert with_masks.axes[1 + 2 * len(models)].get_title() == "máscara"


def test_the_notebook_reads_media_with_the_analysis_reader():
    from ae_lab.notebook import media

    assert media.media_files is runs_module.media_files and media.open_run is runs_module.open_run
