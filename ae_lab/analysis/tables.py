"""Pure analysis: run frames in, tables (one row per run, AUROC per class and defect,
good-vs-defect score gaps, bootstrap intervals and paired differences, the test images to show)
and the ranking in words out."""

import math
from itertools import combinations

import numpy as np
import pandas as pd

from ae_lab import keys
from ae_lab.callbacks import round_robin
from ae_lab.metrics import ALL, bootstrap_class_mean_auroc, class_mean_auroc, defect_aurocs

# Below this gap (in standard deviations of the good scores) a defect is reconstructed about as
# well as a normal image: the score cannot separate them.
SMALL_GAP_STD = 1.0
MAX_LISTED = 6  # defects named in the U-Net sentence


def auroc_table(runs: pd.DataFrame, scores: pd.DataFrame) -> pd.DataFrame:
    """Rows (category, defect), one column per run label, plus `best_run` (highest AUROC per row)."""
    cols = {}
    for run_id, label in zip(runs["run_id"], runs["label"], strict=True):
        per = defect_aurocs(scores[scores["run_id"] == run_id])
        cols[label] = per.set_index(["category", "defect"])["auroc"]
    table = pd.DataFrame(cols)
    table["best_run"] = table.apply(lambda r: r.idxmax() if r.notna().any() else None, axis=1)
    return table


def auroc_mismatches(runs: pd.DataFrame, table: pd.DataFrame, tol: float = 1e-6) -> list[str]:
    """Where the AUROC recomputed from the scores table differs from the run's own summary value."""
    problems = []
    for _, run in runs.iterrows():
        for (cat, defect), value in table[run["label"]].items():
            key = keys.image_auroc_key(cat, None if defect == ALL else defect)
            logged = run.get(key, math.nan)
            if abs(logged - value) > tol:  # False where either is NaN (not logged, undefined)
                problems.append(
                    f"{run['label']}: {key} is {logged:.6f} in the summary, {value:.6f} from the scores"
                )
    return problems


def run_table(runs: pd.DataFrame, history: pd.DataFrame) -> pd.DataFrame:
    """One row per run: model, loss, latent_dim, final/best train and val loss, epoch of best val
    loss, final val/l1 val/l2 val/one_minus_ssim, and every `test/image_auroc...` summary value."""
    history = history.sort_values(keys.EPOCH).set_index(keys.EPOCH)
    stats = {}
    for key in keys.LOSS_CURVES:
        curve = history[["run_id", key]].dropna().groupby("run_id")[key]
        short = {keys.TRAIN_LOSS: "train_loss", keys.VAL_LOSS: "val_loss"}.get(key)
        stats[f"final_{short or key}"] = curve.last()
        if short:
            stats[f"best_{short}"] = curve.min()
            stats[f"best_{short}_epoch"] = curve.idxmin()
    auroc_cols = [c for c in runs.columns if c.startswith(keys.TEST_IMAGE_AUROC)]
    table = runs[["label", "run_id", "model", "loss", "latent_dim"]]
    table = table.join(pd.DataFrame(stats), on="run_id").join(runs[auroc_cols])
    return table.sort_values(["model", "loss", "latent_dim"], ignore_index=True)


def score_gaps(runs: pd.DataFrame, scores: pd.DataFrame) -> pd.DataFrame:
    """Per run, class and defect: mean score of good and defective images and their gap in units of
    the good images' standard deviation (near 0: the defect is reconstructed as well as normal)."""
    ids = ["run_id", "category", "defect"]
    good = scores[scores["label"] == 0].groupby(["run_id", "category"])["score"]
    bad = scores[scores["label"] == 1].groupby(ids)["score"].mean().rename("defect_mean")
    gaps = bad.reset_index().join(good.agg(good_mean="mean", std="std"), on=ids[:2])
    gaps["gap_std"] = (gaps["defect_mean"] - gaps["good_mean"]) / gaps.pop("std")  # 0 gives inf
    aurocs = [defect_aurocs(scores[scores["run_id"] == r]).assign(run_id=r) for r in runs["run_id"]]
    gaps = gaps.merge(pd.concat(aurocs)[[*ids, "auroc"]], on=ids, how="left")
    columns = ["label", "model", "loss", "category", "defect", "good_mean", "defect_mean", "auroc"]
    return runs[["run_id", "label", "model", "loss"]].merge(gaps)[[*columns, "gap_std"]]


def class_warning(runs: pd.DataFrame) -> list[str]:
    """A warning when the runs were tested on different classes: their AUROCs do not rank."""
    classes = sorted(runs["classes"].dropna().unique())
    if len(classes) < 2:
        return []
    return [
        f"the runs were tested on different classes ({', '.join(classes)}): their image AUROCs "
        "come from different test sets and rank them only loosely; compare runs of one class."
    ]


def ranking(runs: pd.DataFrame, table: pd.DataFrame, gaps: pd.DataFrame) -> list[str]:
    """The ranking in words: best loss per architecture, the best run, per class its best run and
    hardest defect, then where the U-Net reconstructs defects as well as normal images."""
    values, auroc = table.drop(columns="best_run"), keys.TEST_IMAGE_AUROC
    lines = []
    for model, sub in runs.groupby("model", sort=True):
        per_loss = sub.groupby("loss")[auroc].max().sort_values(ascending=False)
        ranked = " > ".join(f"{loss} ({value:.3f})" for loss, value in per_loss.items())
        lines.append(f"{model}: best loss {per_loss.index[0]}; image AUROC by loss: {ranked}.")
    best = runs.loc[runs[auroc].idxmax()]
    lines.append(
        f"Best run overall: {best['label']} ({best['model']}, loss {best['loss']}, "
        f"latent {best['latent_dim']}) with image AUROC {best[auroc]:.3f}."
    )
    model_of = runs.set_index("label")["model"]
    for cat in values.index.get_level_values("category").unique():
        top = table.loc[(cat, ALL), "best_run"]
        if pd.isna(top):  # NaN in every run: no number to rank by, and none is made up
            lines.append(
                f"{cat}: no image AUROC in any run: its test images are all good or all "
                "defective, so AUROC is undefined (add the missing kind to its test set)."
            )
            continue
        line = f"{cat}: best run {top} ({model_of[top]}, AUROC {values.loc[(cat, ALL), top]:.3f})"
        defects = values.loc[cat].drop(index=ALL).max(axis=1).sort_values()
        if len(defects):
            line += f"; hardest defect {defects.index[0]} (best AUROC {defects.iloc[0]:.3f})"
        lines.append(line + ".")
    return lines + unet_sentences(gaps)


def unet_sentences(gaps: pd.DataFrame) -> list[str]:
    """Where the U-Net's skip connections let it reconstruct defects as well as normal images."""
    # The plain U-Net (full skips) against every other architecture, unet_coarse included, each
    # named in the sentence as a reference.
    unet, others = gaps[gaps["model"] == "unet"], gaps[gaps["model"] != "unet"]
    if unet.empty:
        return []
    small = unet[unet["gap_std"] < SMALL_GAP_STD]
    if small.empty:
        low = unet.loc[unet["gap_std"].idxmin()]
        return [
            f"The U-Net keeps a clear score gap (>= {SMALL_GAP_STD:g} std of the good scores) on "
            f"every defect; the smallest is {low['category']}/{low['defect']} in {low['label']} "
            f"({low['gap_std']:.2f} std)."
        ]
    # One entry per (class, defect), smallest mean gap first; the full table is score_gaps.csv.
    summary = (
        small.groupby(["category", "defect"])
        .agg(gap=("gap_std", "mean"), n=("label", "size"), auroc=("auroc", "mean"))
        .sort_values("gap")
    )
    parts = []
    for (cat, defect), row in summary.head(MAX_LISTED).iterrows():
        ref = others[(others["category"] == cat) & (others["defect"] == defect)]
        text = f"{cat}/{defect} (U-Net {row['gap']:.2f} std over {int(row['n'])} run(s), AUROC {row['auroc']:.3f}"
        for model, gap in ref.groupby("model")["gap_std"].max().items():
            text += f"; {model} up to {gap:.2f} std"
        parts.append(text + ")")
    if len(summary) > MAX_LISTED:
        parts.append(f"and {len(summary) - MAX_LISTED} more (score_gaps.csv)")
    lead = f"mean score gap below {SMALL_GAP_STD:g} std of the good scores"
    # A negative gap: the defect scores *below* the good images (the U-Net reconstructs it even
    # better than normal detail): say so rather than "about as well".
    if below := int((summary["gap"] < 0).sum()):
        lead += f"; {below} of them score *lower* than the good images, AUROC under 0.5"
    text = "; ".join(parts)
    return [f"The U-Net does not separate these defects from normal images ({lead}): {text}."]


def by_class(scores: pd.DataFrame, column: str = "score") -> tuple[list, list]:
    """(labels, values) of the images in `scores`, one array each per class (sorted), as
    `metrics.class_mean_auroc` and its bootstrap take them."""
    classes = [part for _, part in scores.groupby("category", sort=True)]
    return [p["label"].to_numpy(int) for p in classes], [p[column].to_numpy(float) for p in classes]


def auroc_intervals(runs: pd.DataFrame, scores: pd.DataFrame, n_boot: int = 500) -> pd.DataFrame:
    """One row per run: label, model, loss, the AUROC (mean of the classes) and its 95 %
    percentile bootstrap interval (`low`, `high`), from the per-image `scores` (columns run_id,
    category, label, score)."""
    rows = []
    for _, run in runs.iterrows():
        labels, values = by_class(scores[scores["run_id"] == run["run_id"]])
        reps = bootstrap_class_mean_auroc(labels, values, n_boot)
        low, high = np.percentile(reps, [2.5, 97.5])
        rows.append((*run[["label", "model", "loss"]], class_mean_auroc(labels, values), low, high))
    columns = ["label", "model", "loss", "auroc", "low", "high"]
    return pd.DataFrame(rows, columns=columns).sort_values(["model", "loss"], ignore_index=True)


def auroc_differences(runs: pd.DataFrame, scores: pd.DataFrame, n_boot: int = 1000) -> pd.DataFrame:
    """Paired bootstrap of the difference of image AUROC (mean of the classes) between two runs
    on the test images both scored: every pair of runs of one architecture (its losses), and the
    best runs of the architectures. One row per pair, the run of higher `test/image_auroc` first:
    comparison, run_a, run_b, difference (a - b), its 95 % percentile interval (`low`, `high`)
    and `p_le_0`, the share of replicates where it is <= 0 (small: a is better beyond what
    resampling the test images explains)."""
    ranked = runs.sort_values([keys.TEST_IMAGE_AUROC, "label"], ascending=[False, True])
    pairs = [
        (f"pérdidas de {model}", a, b)
        for model, sub in ranked.groupby("model", sort=True)
        for a, b in combinations(sub["run_id"], 2)
    ]
    best = ranked.groupby("model", sort=True).head(1)["run_id"]
    pairs += [("mejor de cada arquitectura", a, b) for a, b in combinations(best, 2)]
    label = runs.set_index("run_id")["label"]
    replicates = {}  # (run, images): a run in several pairs on the same images is resampled once
    rows = []
    for what, a, b in pairs:
        other = scores.loc[scores["run_id"] == b, ["path", "score"]]
        both = scores[scores["run_id"] == a].merge(other, on="path", suffixes=("", "_b"))
        if both.empty:  # tested on different images: nothing to pair
            continue
        both = both.sort_values(["category", "path"])
        points, reps = [], []
        for run, column in ((a, "score"), (b, "score_b")):
            labels, values = by_class(both, column)
            key = (run, tuple(both["path"]))
            if key not in replicates:
                replicates[key] = bootstrap_class_mean_auroc(labels, values, n_boot)
            points.append(class_mean_auroc(labels, values))
            reps.append(replicates[key])
        diff = reps[0] - reps[1]
        low, high = np.percentile(diff, [2.5, 97.5])
        share = float(np.mean(diff <= 0))
        rows.append((what, label[a], label[b], points[0] - points[1], low, high, share))
    columns = ["comparison", "run_a", "run_b", "difference", "low", "high", "p_le_0"]
    return pd.DataFrame(rows, columns=columns)


def comparison_images(runs: pd.DataFrame, scores: pd.DataFrame, n: int = 8, seed: int = 0):
    """`n` good and `n` defective test images that every run of `runs` scored (path, category,
    defect, label; good first): the good ones round-robin over the classes, the defective ones
    from the hardest defect types (lowest image AUROC averaged over the runs), round-robin over
    the classes, each class's hardest type first. The same images for every run compared."""
    mine = scores[scores["run_id"].isin(runs["run_id"])]
    shared = mine.groupby("path")["run_id"].nunique() == runs["run_id"].nunique()
    table = mine[mine["run_id"] == runs["run_id"].iloc[0]]
    table = table[table["path"].map(shared)]
    per_run = [defect_aurocs(part) for _, part in mine.groupby("run_id")]
    hard = pd.concat(per_run).query("defect != @ALL").groupby(["category", "defect"])["auroc"]
    rank = hard.mean().groupby("category").rank(method="first")  # 1: the class's hardest type
    bad = table[table["label"] == 1]
    types = pd.MultiIndex.from_frame(bad[["category", "defect"]])
    bad = bad.assign(hardness=rank.reindex(types).fillna(math.inf).to_numpy())
    good = round_robin(table[table["label"] == 0], n, ["category"], seed)
    picked = table.loc[good + round_robin(bad, n, ["category", "hardness"], seed)]
    return picked.sort_values(["label", "category"], kind="stable")[list(keys.SCORE_COLUMNS[:4])]
