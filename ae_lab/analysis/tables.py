"""Tables from the run frames: one row per run, AUROC per (class, defect), good-vs-defect score gaps."""

import math

import pandas as pd

from ae_lab import keys
from ae_lab.metrics import ALL, defect_aurocs

__all__ = [
    "ALL", "auroc_mismatches", "auroc_table", "defect_aurocs", "run_table", "score_gaps", "to_markdown"
]  # fmt: skip


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
            logged = run.get(key)
            if logged is None or pd.isna(logged) or pd.isna(value):
                continue
            if abs(float(logged) - float(value)) > tol:
                problems.append(
                    f"{run['label']}: {key} is {logged:.6f} in the summary, {value:.6f} from the scores"
                )
    return problems


def run_table(runs: pd.DataFrame, history: pd.DataFrame) -> pd.DataFrame:
    """One row per run: model, loss, latent_dim, final/best train and val loss, epoch of best val
    loss, final val/l1 val/l2 val/one_minus_ssim, and every `test/image_auroc...` summary value."""
    auroc_cols = [c for c in runs.columns if c.startswith(keys.TEST_IMAGE_AUROC)]
    rows = []
    for _, run in runs.iterrows():
        h = history[history["run_id"] == run["run_id"]].sort_values(keys.EPOCH)
        row = {c: run[c] for c in ("label", "run_id", "model", "loss", "latent_dim")}
        for key, short in ((keys.TRAIN_LOSS, "train_loss"), (keys.VAL_LOSS, "val_loss")):
            series = h.set_index(keys.EPOCH)[key].dropna()
            row[f"final_{short}"] = series.iloc[-1] if len(series) else math.nan
            row[f"best_{short}"] = series.min() if len(series) else math.nan
            row[f"best_{short}_epoch"] = int(series.idxmin()) if len(series) else None
        for key in (keys.VAL_L1, keys.VAL_L2, keys.VAL_ONE_MINUS_SSIM):
            series = h[key].dropna()
            row[f"final_{key}"] = series.iloc[-1] if len(series) else math.nan
        row |= {c: run[c] for c in auroc_cols}
        rows.append(row)
    return pd.DataFrame(rows).sort_values(["model", "loss", "latent_dim"], ignore_index=True)


def score_gaps(runs: pd.DataFrame, scores: pd.DataFrame) -> pd.DataFrame:
    """Per run, class and defect: mean score of good and defective images and their gap in units of
    the good images' standard deviation (near 0: the defect is reconstructed as well as normal)."""
    rows = []
    for _, run in runs.iterrows():
        sc = scores[scores["run_id"] == run["run_id"]]
        aurocs = defect_aurocs(sc).set_index(["category", "defect"])["auroc"]
        for cat, part in sc.groupby("category", sort=True):
            good = part.loc[part["label"] == 0, "score"]
            for defect, bad in part[part["label"] == 1].groupby("defect", sort=True):
                std = good.std(ddof=1) if len(good) > 1 else math.nan
                gap = bad["score"].mean() - good.mean()
                rows.append(
                    {
                        "label": run["label"],
                        "model": run["model"],
                        "loss": run["loss"],
                        "category": cat,
                        "defect": defect,
                        "good_mean": good.mean(),
                        "defect_mean": bad["score"].mean(),
                        "gap_std": gap / std if std and std > 0 else math.nan,
                        "auroc": aurocs.get((cat, defect), math.nan),
                    }
                )
    return pd.DataFrame(rows)


def to_markdown(table: pd.DataFrame, bold_best_of: list[str] | None = None, digits: int = 3) -> str:
    """A GitHub Markdown table (pandas + tabulate); in `bold_best_of` columns the row maximum is bold."""
    frame = table.reset_index() if not isinstance(table.index, pd.RangeIndex) else table
    cells = frame.astype(object).map(
        lambda v: f"{v:.{digits}f}" if isinstance(v, float) else str(v)
    )
    if bold_best_of:
        best = frame[bold_best_of].max(axis=1)
        for col in bold_best_of:
            top = frame[col].eq(best) & frame[col].notna()
            cells.loc[top, col] = "**" + cells.loc[top, col] + "**"
    return cells.to_markdown(index=False, disable_numparse=True) + "\n"
