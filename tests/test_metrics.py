import numpy as np
import pandas as pd
import pytest
import torch

from ae_lab import keys
from ae_lab.metrics import (
    aupro,
    auroc,
    bootstrap_class_mean_auroc,
    class_mean_auroc,
    f1_max,
    image_metrics,
    pixel_metrics,
    pro_curve,
    rank_auroc,
)


def _scores_df() -> pd.DataFrame:
    """Two classes; `score` separates good from defective perfectly."""
    rows = [
        ("bottle", "good", 0, 0.1),
        ("bottle", "good", 0, 0.2),
        ("bottle", "broken", 1, 0.8),
        ("bottle", "crack", 1, 0.9),
        ("bottle", "crack", 1, 0.7),
        ("grid", "good", 0, 0.3),
        ("grid", "good", 0, 0.4),
        ("grid", "bent", 1, 0.6),
    ]
    return pd.DataFrame(rows, columns=["category", "defect", "label", "score"])


def test_perfect_and_reversed_scorers():
    df = _scores_df()
    auroc_keys = [
        keys.image_auroc_key(),
        keys.image_auroc_key("bottle"),
        keys.image_auroc_key("grid"),
        keys.image_auroc_key("bottle", "broken"),
        keys.image_auroc_key("bottle", "crack"),
        keys.image_auroc_key("grid", "bent"),
    ]
    perfect = image_metrics(df)
    reversed_ = image_metrics(df.assign(score=-df["score"]))
    for key in auroc_keys:
        assert perfect[key] == 1.0 and reversed_[key] == 0.0, key
    assert keys.image_auroc_key("bottle", "good") not in perfect
    assert perfect["test/f1_max"] == 1.0
    assert all(type(v) is float for v in perfect.values())


def test_per_defect_grouping_compares_each_defect_with_its_class_good():
    rows = [("a", "good", 0, s) for s in (0.1, 0.2, 0.3, 0.4)]
    rows += [("a", "scratch", 1, s) for s in (0.9, 0.8)]
    rows += [("a", "crack", 1, s) for s in (0.15, 0.35)]  # beats 1 and 3 of the 4 goods
    rows += [("b", "good", 0, 0.95), ("b", "hole", 1, 0.05)]  # other class: must not leak in
    metrics = image_metrics(pd.DataFrame(rows, columns=["category", "defect", "label", "score"]))
    assert metrics[keys.image_auroc_key("a", "scratch")] == 1.0
    assert metrics[keys.image_auroc_key("a", "crack")] == 0.5
    assert metrics[keys.image_auroc_key("a")] == pytest.approx(0.75)
    assert metrics[keys.image_auroc_key("b", "hole")] == 0.0


def test_f1_max_on_a_known_case():
    labels = np.array([0, 0, 1, 0, 1])
    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.5])
    # Threshold 0.3: TP 2, FP 1, FN 0 -> P 2/3, R 1, F1 0.8 (best of all thresholds).
    assert f1_max(labels, scores) == pytest.approx((0.8, 0.3, 2 / 3, 1.0))
    df = pd.DataFrame(
        {
            "category": "a",
            "defect": ["good", "good", "x", "good", "x"],
            "label": labels,
            "score": scores,
        }
    )
    metrics = image_metrics(df)
    assert metrics["test/f1_max"] == pytest.approx(0.8)
    assert metrics["test/f1_threshold"] == pytest.approx(0.3)
    assert metrics["test/f1_precision"] == pytest.approx(2 / 3)
    assert metrics["test/f1_recall"] == 1.0
    assert metrics["test/f1_max/a"] == pytest.approx(0.8)


@pytest.mark.filterwarnings("ignore:Skipped")
def test_degenerate_groups_warn_and_skip():
    df = _scores_df()
    only_good = df[df["label"] == 0]
    with pytest.warns(
        UserWarning, match=r"Skipped test/image_auroc_pooled: the test set has only good"
    ):
        metrics = image_metrics(only_good)
    assert metrics == {}

    no_good_grid = df[(df["category"] != "grid") | (df["label"] == 1)]
    with pytest.warns(UserWarning, match=r"Skipped test/image_auroc/grid/bent: .*only defective"):
        metrics = image_metrics(no_good_grid)
    assert keys.image_auroc_key("grid") not in metrics
    assert metrics[keys.image_auroc_key()] == 1.0 and metrics[keys.image_auroc_key("bottle")] == 1.0

    with pytest.warns(UserWarning, match="non-finite"):
        metrics = image_metrics(df.assign(score=np.nan))
    assert keys.image_auroc_key() not in metrics
    assert "test/image_auroc_pooled" not in metrics


def test_image_auroc_is_the_mean_of_the_classes_and_pooled_has_its_own_key():
    # Class a separates perfectly on small scores, class b perfectly on large ones; pooled, b's
    # good images outscore a's defects, so the pooled AUROC is lower than either class.
    df = pd.DataFrame(
        {
            "category": ["a"] * 4 + ["b"] * 4,
            "defect": ["good", "good", "x", "x"] * 2,
            "label": [0, 0, 1, 1] * 2,
            "score": [0.1, 0.2, 0.3, 0.4, 10.0, 11.0, 12.0, 13.0],
        }
    )
    metrics = image_metrics(df)
    assert metrics[keys.image_auroc_key("a")] == 1.0 == metrics[keys.image_auroc_key("b")]
    assert metrics[keys.TEST_IMAGE_AUROC] == 1.0
    assert metrics["test/image_auroc_pooled"] == pytest.approx(0.75)
    one_class_random = df.assign(score=[0.4, 0.1, 0.2, 0.3, 10.0, 11.0, 12.0, 13.0])
    metrics = image_metrics(one_class_random)
    assert metrics[keys.TEST_IMAGE_AUROC] == pytest.approx((0.5 + 1.0) / 2)


def test_class_mean_auroc_and_its_bootstrap_replicates():
    labels = [np.array([0, 0, 1, 1]), np.array([0, 0, 0, 1])]
    scores = [np.array([0.1, 0.2, 0.3, 0.4]), np.array([0.5, 0.9, 0.1, 0.8])]
    assert class_mean_auroc(labels, scores) == pytest.approx((1.0 + 2 / 3) / 2)
    reps = bootstrap_class_mean_auroc(labels, scores, n_boot=40)
    assert len(set(reps)) > 1 and all(0.0 <= r <= 1.0 for r in reps)
    # Each class keeps its counts of good and defective images: a perfect class stays perfect.
    assert set(bootstrap_class_mean_auroc([labels[0]], [scores[0]], n_boot=10)) == {1.0}
    np.testing.assert_array_equal(reps, bootstrap_class_mean_auroc(labels, scores, n_boot=40))
    # Ties count half, as in `auroc`; one label only is undefined.
    tied = np.array([[0, 1, 0, 1]]), np.array([[0.5, 0.5, 0.1, 0.9]])
    assert rank_auroc(*tied)[0] == auroc(tied[0][0], tied[1][0]) == 0.875
    assert np.isnan(rank_auroc(np.array([[1, 1]]), np.array([[0.1, 0.2]])))[0]


def _two_region_masks(n_good: int = 3, size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Masks [N,H,W]: image 0 has two separate square regions of different sizes; then goods."""
    masks = np.zeros((1 + n_good, size, size), dtype=bool)
    masks[0, 2:6, 2:6] = True  # 16 px
    masks[0, 15:27, 15:27] = True  # 144 px
    return masks, masks[0, 2:6, 2:6]


def test_aupro_perfect_constant_and_random_maps():
    masks, _ = _two_region_masks()
    rng = np.random.default_rng(0)
    assert aupro(masks.astype(np.float32), masks) == pytest.approx(1.0)
    # A constant map reaches every pixel at once: the diagonal, 0.5 * 0.3 / 0.3.
    assert aupro(np.zeros(masks.shape, np.float32), masks) == pytest.approx(0.15)
    assert aupro(rng.random(masks.shape), masks) < 0.25


def test_pro_is_a_mean_over_regions_not_pixels():
    masks, _ = _two_region_masks()
    rng = np.random.default_rng(1)
    scores = rng.random(masks.shape) * 0.5
    scores[0, 2:6, 2:6] = 1.0  # hits only the small region (10 % of the defect pixels)
    fpr, pro = pro_curve(scores, masks)
    low = fpr <= 0.01
    assert pro[low].max() == pytest.approx(0.5, abs=0.02)
    assert 0.5 < aupro(scores, masks) < 0.6  # 0.5 + half of the random diagonal's 0.15
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(pro) >= 0)


@pytest.mark.filterwarnings("ignore:Skipped")
def test_pixel_metrics_per_class_with_good_images():
    masks, _ = _two_region_masks(n_good=3)
    maps = masks.astype(np.float32)
    categories = ["a"] * 4 + ["b"] * 2
    all_masks = np.concatenate([masks, np.zeros((2, 32, 32), bool)])[:, None]
    all_maps = np.concatenate([maps, np.zeros((2, 32, 32), np.float32)])[:, None]
    has_mask = np.array([True, False, False, False, False, False])
    with pytest.warns(
        UserWarning, match=r"Skipped test/pixel_auroc/b and test/aupro/b: .*no defect pixels"
    ):
        metrics = pixel_metrics(
            torch.from_numpy(all_maps),
            torch.from_numpy(all_masks),
            categories,
            torch.from_numpy(has_mask),
        )
    assert metrics == {"test/pixel_auroc/a": 1.0, "test/aupro/a": pytest.approx(1.0)}
    assert all(type(v) is float for v in metrics.values())

    # A hot spot on a good image must count as false positives ...
    all_maps[1, 0, 0, :10] = 2.0
    metrics = pixel_metrics(all_maps, all_masks, categories, has_mask)
    assert metrics["test/pixel_auroc/a"] < 1.0 and metrics["test/aupro/a"] < 1.0
    # ... unless labels say that image is defective without a mask, which drops it.
    labels = np.array([1, 1, 0, 0, 0, 0])
    metrics = pixel_metrics(all_maps, all_masks, categories, has_mask, labels=labels)
    assert metrics["test/pixel_auroc/a"] == 1.0
