"""A short ranking in words, generated from the run, AUROC and score-gap tables."""

import pandas as pd

from ae_lab import keys
from ae_lab.analysis.tables import ALL

# Below this gap (in standard deviations of the good scores) a defect is reconstructed about as
# well as a normal image: the score cannot separate them.
MAX_LISTED = 6  # defects named in the U-Net sentence
SMALL_GAP_STD = 1.0
UNET = "unet"


def overall_auroc(runs: pd.DataFrame, table: pd.DataFrame) -> pd.Series:
    """`test/image_auroc` per run label; the mean of the class AUROCs where a run did not log it."""
    per_class = table.xs(ALL, level="defect").drop(columns="best_run").mean()
    logged = (
        runs.set_index("label")[keys.TEST_IMAGE_AUROC] if keys.TEST_IMAGE_AUROC in runs else None
    )
    return per_class if logged is None else logged.fillna(per_class)


def loss_sentences(runs: pd.DataFrame, table: pd.DataFrame) -> list[str]:
    """Best loss function per architecture, then the best run overall."""
    auroc = overall_auroc(runs, table)
    frame = runs.assign(auroc=runs["label"].map(auroc))
    lines = []
    for model, sub in frame.groupby("model", sort=True):
        per_loss = sub.groupby("loss")["auroc"].max().sort_values(ascending=False)
        ranked = " > ".join(f"{loss} ({value:.3f})" for loss, value in per_loss.items())
        lines.append(f"{model}: best loss {per_loss.index[0]}; image AUROC by loss: {ranked}.")
    best = frame.loc[frame["auroc"].idxmax()]
    lines.append(
        f"Best run overall: {best['label']} ({best['model']}, loss {best['loss']}, "
        f"latent {best['latent_dim']}) with image AUROC {best['auroc']:.3f}."
    )
    return lines


def class_sentences(runs: pd.DataFrame, table: pd.DataFrame) -> list[str]:
    """Per class: its best run, and its hardest defect (lowest best-run AUROC)."""
    values = table.drop(columns="best_run")
    model_of = runs.set_index("label")["model"]
    lines = []
    for cat in values.index.get_level_values("category").unique():
        row = values.loc[(cat, ALL)]
        best = row.idxmax()
        defects = values.loc[cat].drop(index=ALL).max(axis=1).sort_values()
        hardest = (
            f"; hardest defect {defects.index[0]} (best AUROC {defects.iloc[0]:.3f})"
            if len(defects)
            else ""
        )
        lines.append(f"{cat}: best run {best} ({model_of[best]}, AUROC {row[best]:.3f}){hardest}.")
    return lines


def unet_sentences(gaps: pd.DataFrame) -> list[str]:
    """Where the U-Net's skip connections let it reconstruct defects as well as normal images."""
    unet = gaps[gaps["model"] == UNET]
    if unet.empty:
        return [
            "No U-Net runs: the good-vs-defect reconstruction gap of the U-Net is not measured."
        ]
    small = unet[unet["gap_std"] < SMALL_GAP_STD]
    others = gaps[gaps["model"] != UNET]
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
        text = f"{cat}/{defect} (U-Net {row['gap']:.2f} std over {int(row['n'])} run(s), AUROC {row['auroc']:.3f}"
        ref = others[(others["category"] == cat) & (others["defect"] == defect)]
        if not ref.empty:
            best_other = ref.groupby("model")["gap_std"].max()
            text += "; " + ", ".join(f"{m} up to {g:.2f} std" for m, g in best_other.items())
        parts.append(text + ")")
    more = len(summary) - MAX_LISTED
    tail = f"; and {more} more (score_gaps.csv)" if more > 0 else ""
    # A negative gap means the defect scores *below* the good images (the U-Net reconstructs it
    # even better than normal detail): say so rather than "about as well".
    below = summary["gap"] < 0
    lead = (
        f"The U-Net does not separate these defects from normal images (mean score gap below "
        f"{SMALL_GAP_STD:g} std of the good scores"
        + (
            f"; {int(below.sum())} of them score *lower* than the good images, AUROC under 0.5"
            if below.any()
            else ""
        )
        + "): "
    )
    return [lead + "; ".join(parts) + tail + "."]


def ranking(runs: pd.DataFrame, table: pd.DataFrame, gaps: pd.DataFrame) -> list[str]:
    """All sentences, in order: losses per architecture, classes, U-Net gap."""
    return loss_sentences(runs, table) + class_sentences(runs, table) + unet_sentences(gaps)
