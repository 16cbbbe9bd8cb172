"""Test metrics from per-image scores and stacked anomaly maps: image AUROC, F1-max, pixel AUROC, AUPRO.

Pure functions returning plain floats under the `test/...` keys of `ae_lab.keys`. A metric that is
undefined for the given data (one label only, no masks) is skipped with a one-line warning.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import ndimage
from scipy.stats import rankdata
from sklearn.metrics import auc, precision_recall_curve
from torch import Tensor

from ae_lab import keys

# 8-connectivity, as in the MVTec AD evaluation code: diagonal pixels belong to the same defect.
# Masks are labelled as one [N,H,W] stack, so the middle plane: no region spans two images.
_STRUCTURE = np.pad(np.ones((1, 3, 3), dtype=bool), ((1, 1), (0, 0), (0, 0)))


def _skip(key: str, why: str) -> None:
    warnings.warn(f"Skipped {key}: {why}.", stacklevel=3)


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Exact ROC AUC of `scores` ranking label 1 above label 0 (ties count half); NaN where
    undefined (one label only, non-finite scores). Image and pixel level alike."""
    return _auroc(np.asarray(labels), np.asarray(scores))[0]


def _auroc(labels: np.ndarray, scores: np.ndarray, what: str = "") -> tuple[float, str]:
    """(AUROC, "") or (NaN, why it is undefined for `what`)."""
    if labels.size == 0 or labels.min() == labels.max():
        kind = "defective" if labels.size and labels.flat[0] == 1 else "good"
        return math.nan, f"{what} has only {kind} samples ({labels.size}), so AUROC is undefined"
    if not np.isfinite(scores).all():
        return math.nan, f"{what} has non-finite scores"
    return float(rank_auroc(labels.reshape(1, -1), scores.reshape(1, -1))[0]), ""


ALL = "all"  # the `defect` of a class-level row: good vs every defect of the class


def class_mean_auroc(labels: list[np.ndarray], scores: list[np.ndarray]) -> float:
    """Mean of the per-class AUROCs (`test/image_auroc`: classes whose scores live on different
    scales are not ranked against each other, MVTec's convention)."""
    return float(np.mean([auroc(y, s) for y, s in zip(labels, scores, strict=True)]))


def rank_auroc(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """AUROC of each row of labels and scores [B,n] (Mann-Whitney: ties count half), NaN for a
    row with one label only or non-finite scores; one vectorised pass for many replicates."""
    ranks = rankdata(scores, axis=1)
    n_pos = labels.sum(axis=1)
    n_neg = labels.shape[1] - n_pos
    with np.errstate(invalid="ignore", divide="ignore"):
        value = ((ranks * labels).sum(axis=1) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return np.where(np.isfinite(scores).all(axis=1) & (n_pos * n_neg > 0), value, np.nan)


def bootstrap_class_mean_auroc(
    labels: list[np.ndarray], scores: list[np.ndarray], n_boot: int = 1000, seed: int = 0
) -> np.ndarray:
    """`n_boot` bootstrap replicates of `class_mean_auroc` (per class: labels and scores [n_c]),
    each resampling every class's good and defective images separately (counts kept). The draws
    depend only on `labels` and `seed`, so two runs scored on the same images (same classes, same
    order) are resampled jointly: the difference of their replicates is the paired bootstrap of
    their difference, in which what the images do to both runs cancels."""
    rng = np.random.default_rng(seed)
    pools = [[np.flatnonzero(y == k) for k in (0, 1)] for y in labels]
    draws = [
        [np.concatenate([rng.choice(p, p.size) for p in pool]) for pool in pools]
        for _ in range(n_boot)
    ]
    per_class = []
    for c, (y, s) in enumerate(zip(labels, scores, strict=True)):
        picks = np.stack([draw[c] for draw in draws])  # [n_boot, n_c]
        per_class.append(rank_auroc(y[picks], s[picks]))
    return np.mean(per_class, axis=0)


def defect_aurocs(scores: pd.DataFrame, column: str = "score", warn: bool = False) -> pd.DataFrame:
    """Image AUROC of one run's scores: category, defect, auroc, n_good, n_defect.

    Per (class, defect): the class's good images against that defect; per (class, `ALL`): against
    all its defects. NaN where undefined (with `warn`, a one-line warning naming the metric key).
    The one implementation behind the `test/image_auroc/<class>[/<defect>]` keys, the analysis
    tables and the histograms' legends; `column` may be any per-image value (`l2`, ...).
    """
    rows = []
    for cat, part in scores.groupby("category", sort=True):
        good = part[part["label"] == 0]
        defects = sorted(set(part.loc[part["label"] == 1, "defect"]))
        for defect in [*defects, ALL]:
            bad = part[part["label"] == 1] if defect == ALL else part[part["defect"] == defect]
            both = pd.concat([good, bad])
            what = f"class {cat!r}" + ("" if defect == ALL else f" good vs {defect!r}")
            value, why = _auroc(both["label"].to_numpy(int), both[column].to_numpy(float), what)
            if why and warn:
                _skip(keys.image_auroc_key(cat, None if defect == ALL else defect), why)
            rows.append((cat, defect, value, len(good), len(bad)))
    return pd.DataFrame(rows, columns=["category", "defect", "auroc", "n_good", "n_defect"])


def f1_max(labels: np.ndarray, scores: np.ndarray) -> tuple[float, float, float, float]:
    """Best F1 over all thresholds (predict defective when score >= threshold).

    Returns (f1, threshold, precision, recall) at that threshold.
    """
    precision, recall, thresholds = precision_recall_curve(labels, scores)
    # The last point (precision 1, recall 0) has no threshold.
    precision, recall = precision[:-1], recall[:-1]
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(denom), where=denom > 0)
    i = int(np.argmax(f1))
    return float(f1[i]), float(thresholds[i]), float(precision[i]), float(recall[i])


def image_metrics(df: pd.DataFrame) -> dict[str, float]:
    """Image AUROC (mean of the classes, pooled, per class, per class and defect vs that class's
    good), F1-max (of the test set, with its threshold, precision and recall, and per class).

    df: one row per test image with columns `category`, `defect`, `label` (0/1), `score`.
    """
    out: dict[str, float] = {}
    pooled, why = _auroc(df["label"].to_numpy(int), df["score"].to_numpy(float), "the test set")
    if why:
        _skip("test/image_auroc_pooled", why)
    else:
        out["test/image_auroc_pooled"] = pooled
    table = defect_aurocs(df, warn=True).dropna(subset=["auroc"])
    for row in table.itertuples():
        defect = None if row.defect == ALL else row.defect
        out[keys.image_auroc_key(row.category, defect)] = float(row.auroc)
    classes = table.loc[table["defect"] == ALL, "auroc"]
    if len(classes):  # the mean of the classes' AUROCs (class_mean_auroc without resampling)
        out[keys.TEST_IMAGE_AUROC] = float(classes.mean())
    for category, part in [(None, df), *df.groupby("category", sort=True)]:
        key = f"test/f1_max/{category}" if category else "test/f1_max"
        labels, values = part["label"].to_numpy(int), part["score"].to_numpy(float)
        if len(np.unique(labels)) < 2 or not np.isfinite(values).all():
            what = f"class {category!r}" if category else "the test set"
            _skip(key, f"{what} needs good and defective images with finite scores")
            continue
        f1, threshold, precision, recall = f1_max(labels, values)
        out[key] = f1
        if category is None:
            out |= {"test/f1_threshold": threshold, "test/f1_precision": precision}
            out["test/f1_recall"] = recall
    return out


def pro_curve(
    scores: np.ndarray, masks: np.ndarray, fpr_limit: float = 0.3, num_thresholds: int = 200
) -> tuple[np.ndarray, np.ndarray]:
    """Per-region-overlap curve: (fpr, pro), both non-decreasing, from (0, 0) to (1, 1).

    scores: [N,H,W] float; masks: [N,H,W] bool with at least one defect pixel and one good pixel.
    FPR is over all good pixels; PRO is the mean over ground-truth connected components of the
    fraction of the component at or above the threshold. Thresholds are quantiles of the good
    pixels' scores, evenly spaced in FPR up to `fpr_limit`, plus one just above the highest good
    score (the FPR = 0 point), so the integrated range is sampled evenly whatever the score scale.
    """
    neg = np.sort(scores[~masks])
    regions, n_regions = ndimage.label(masks, structure=_STRUCTURE, output=np.int64)

    grid = np.linspace(0.0, fpr_limit, num_thresholds)
    idx = np.ceil((1.0 - grid) * (neg.size - 1)).astype(np.int64)
    thresholds = np.unique(np.r_[neg[idx], np.nextafter(neg[-1], np.inf)])  # ascending
    fpr = 1.0 - np.searchsorted(neg, thresholds, side="left") / neg.size

    # Bin every defect pixel by how many thresholds it reaches, count per (region, bin), then a
    # reverse cumsum gives each region's pixels >= each threshold, all without a threshold loop.
    pos_region = regions[masks] - 1
    bins = np.searchsorted(thresholds, scores[masks], side="right")
    width = thresholds.size + 1
    counts = np.bincount(pos_region * width + bins, minlength=n_regions * width)
    counts = counts.reshape(n_regions, width)
    reached = counts[:, ::-1].cumsum(axis=1)[:, ::-1][:, 1:]  # [R, T]: pixels >= thresholds[t]
    pro = (reached / counts.sum(axis=1, keepdims=True)).mean(axis=0)

    # Descending thresholds make both curves non-decreasing; close them at (0, 0) and (1, 1).
    return np.r_[0.0, fpr[::-1], 1.0], np.r_[0.0, pro[::-1], 1.0]


def aupro(scores: np.ndarray, masks: np.ndarray, fpr_limit: float = 0.3) -> float:
    """Area under the PRO curve for FPR in [0, fpr_limit], divided by fpr_limit (so in [0, 1])."""
    fpr, pro = pro_curve(scores, masks, fpr_limit)
    end = int(np.searchsorted(fpr, fpr_limit, side="right"))
    f, p = fpr[:end], pro[:end]
    if f[-1] < fpr_limit:  # linear interpolation to the limit, as in the MVTec AD evaluation
        f0, f1_, p0, p1 = fpr[end - 1], fpr[end], pro[end - 1], pro[end]
        f, p = np.r_[f, fpr_limit], np.r_[p, p0 + (p1 - p0) * (fpr_limit - f0) / (f1_ - f0)]
    return float(auc(f, p) / fpr_limit)


def pixel_metrics(
    maps: Tensor | np.ndarray,
    masks: Tensor | np.ndarray,
    categories: Sequence[str],
    has_mask: Tensor | np.ndarray,
    labels: Tensor | np.ndarray | None = None,
) -> dict[str, float]:
    """Per-class pixel AUROC and AUPRO over the class's masked images plus its good images.

    maps: [N,1,H,W] float; masks: [N,1,H,W] bool; categories: N names; has_mask: [N] bool.
    labels [N] (0/1), when given, drop defective images without a mask (their pixels are unknown);
    without labels every image lacking a mask counts as good (all pixels negative).
    """
    scores = np.asarray(maps)[:, 0].astype(np.float32, copy=False)  # CPU tensors or arrays
    gt = np.asarray(masks)[:, 0].astype(bool, copy=False)
    cats, with_mask = np.asarray(categories), np.asarray(has_mask).astype(bool)
    good = ~with_mask if labels is None else ~with_mask & (np.asarray(labels) == 0)
    out: dict[str, float] = {}
    for category in sorted(set(cats.tolist())):
        keep = (cats == category) & (with_mask | good)
        s, m = scores[keep], gt[keep]
        why = (
            "has no defect pixels in its masks"
            if not (with_mask & (cats == category)).any() or not m.any()
            else "has no good pixels"
            if m.all()
            else "has non-finite anomaly maps"
            if not np.isfinite(s).all()
            else ""
        )
        auroc_key, aupro_key = f"test/pixel_auroc/{category}", f"test/aupro/{category}"
        if why:
            _skip(f"{auroc_key} and {aupro_key}", f"class {category!r} {why}")
        else:
            out[auroc_key] = auroc(m.ravel(), s.ravel())
            out[aupro_key] = aupro(s, m)
    return out
