"""The hand-in's support: bootstrap intervals of the runs' AUROC (here, shared by the notebook and
the HTML report), reading a run's W&B media back (`media`), the notebook runner (`notebook`)."""

import numpy as np
import pandas as pd

from ae_lab.metrics import auroc


def class_mean_auroc(labels: list[np.ndarray], scores: list[np.ndarray], rng=None) -> float:
    """Mean of the per-class AUROCs (`test/image_auroc`); with `rng`, of one bootstrap replicate
    that resamples each class's good and defective images separately (their counts stay)."""
    values = []
    for y, s in zip(labels, scores, strict=True):
        if rng is not None:
            pick = [rng.choice(np.flatnonzero(y == k), np.sum(y == k)) for k in (0, 1)]
            y, s = y[np.concatenate(pick)], s[np.concatenate(pick)]
        values.append(auroc(y, s))
    return float(np.mean(values))


def interval_table(runs: pd.DataFrame, scores: pd.DataFrame, n_boot: int = 500) -> pd.DataFrame:
    """One row per run: model, loss, AUROC (mean of the classes) and its 95 % percentile
    bootstrap interval, from the per-image `scores` (columns run_id, category, label, score)."""
    rows = []
    for _, run in runs.iterrows():
        classes = scores[scores["run_id"] == run["run_id"]].groupby("category")
        labels = [part["label"].to_numpy(int) for _, part in classes]
        values = [part["score"].to_numpy(float) for _, part in classes]
        rng = np.random.default_rng(0)
        reps = [class_mean_auroc(labels, values, rng) for _ in range(n_boot)]
        low, high = np.percentile(reps, [2.5, 97.5])
        rows.append((*run[["label", "model", "loss"]], class_mean_auroc(labels, values), low, high))
    columns = ["corrida", "modelo", "pérdida", "AUROC", "IC95 inf.", "IC95 sup."]
    return pd.DataFrame(rows, columns=columns).sort_values(["modelo", "pérdida"], ignore_index=True)
