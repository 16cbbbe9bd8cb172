"""The notebook's results section: W&B media of the runs and of the analysis run, intervals.

Everything is read back from W&B (offline run folders or the API), never from the process that
trained: the figures the notebook shows are the files the runs logged.
"""

from pathlib import Path

import numpy as np
import pandas as pd

from ae_lab import keys
from ae_lab.metrics import auroc
from ae_lab.report.wandb_media import (
    MediaRun,
    media_captions,
    media_files,
    open_api_run,
    open_offline_run,
)

N_BOOT = 500


def media_runs(run_ids: dict[str, str], wandb_dir: Path, project: str, online: bool) -> dict:
    """`{label: MediaRun}` for the given `{label: run_id}`: offline folders, or the API."""
    if not online:
        return {label: open_offline_run(wandb_dir / "wandb", rid) for label, rid in run_ids.items()}
    import wandb

    entity = wandb.Api().default_entity
    cache = Path("reports/notebook/media")
    return {
        label: open_api_run(f"{entity}/{project}/{rid}", cache) for label, rid in run_ids.items()
    }


def class_mean_auroc_interval(
    scores: pd.DataFrame, n_boot: int = N_BOOT, level: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """(mean of the per-class AUROCs, low, high): `test/image_auroc` with a percentile bootstrap
    interval, test images resampled within each class and label (as `metrics.bootstrap_auroc`
    does for one class), so every replicate keeps each class's good/defective counts."""
    rng = np.random.default_rng(seed)
    groups = []
    for _, part in scores.groupby("category", sort=True):
        labels, values = part["label"].to_numpy(int), part["score"].to_numpy(float)
        groups.append((np.flatnonzero(labels == 0), np.flatnonzero(labels == 1), values))
    y = [np.r_[np.zeros(g.size), np.ones(b.size)] for g, b, _ in groups]
    point = float(
        np.mean([auroc(part["label"], part["score"]) for _, part in scores.groupby("category")])
    )
    reps = [
        np.mean([
            auroc(yy, v[np.r_[rng.choice(g, g.size), rng.choice(b, b.size)]])
            for (g, b, v), yy in zip(groups, y, strict=True)
        ])
        for _ in range(n_boot)
    ]  # fmt: skip
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(reps, [tail, 100 - tail])
    return point, float(low), float(high)


def interval_table(runs: pd.DataFrame, scores: pd.DataFrame) -> pd.DataFrame:
    """One row per run: model, loss, AUROC (mean of classes) and its 95 % interval."""
    rows = []
    for _, run in runs.iterrows():
        value, low, high = class_mean_auroc_interval(scores[scores["run_id"] == run["run_id"]])
        rows.append((run["label"], run["model"], run["loss"], value, low, high))
    out = pd.DataFrame(
        rows, columns=["corrida", "modelo", "pérdida", "AUROC", "IC95 inf.", "IC95 sup."]
    )
    return out.sort_values(["modelo", "pérdida"], ignore_index=True)


def overlapping(a: pd.Series, b: pd.Series) -> bool:
    """Whether two rows of `interval_table` have overlapping 95 % intervals (within noise)."""
    return bool(a["IC95 inf."] <= b["IC95 sup."] and b["IC95 inf."] <= a["IC95 sup."])


def reconstruction_table(runs: pd.DataFrame, run_table: pd.DataFrame) -> pd.DataFrame:
    """Per run: final validation errors (the same three for every loss) and the test AUROC."""
    rt = run_table.set_index("label")
    out = pd.DataFrame({
        "modelo": runs["model"].to_numpy(),
        "pérdida": runs["loss"].to_numpy(),
        "val/l1": rt.loc[runs["label"], f"final_{keys.VAL_L1}"].to_numpy(),
        "val/one_minus_ssim": rt.loc[runs["label"], f"final_{keys.VAL_ONE_MINUS_SSIM}"].to_numpy(),
        "AUROC": runs[keys.TEST_IMAGE_AUROC].to_numpy(),
    })  # fmt: skip
    return out.sort_values(["modelo", "pérdida"], ignore_index=True)


def defect_table(auroc_table: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Per (class, defect): the best AUROC of each architecture over its four losses."""
    values = auroc_table.drop(columns="best_run")
    model_of = runs.set_index("label")["model"]
    out = values.T.groupby(model_of).max().T
    out.columns = [f"mejor {m}" for m in out.columns]
    out = out.reset_index().rename(columns={"category": "clase", "defect": "defecto"})
    return out[out["defecto"] != "all"].reset_index(drop=True)


def media_file(run: MediaRun, key: str) -> Path:
    """The file a run logged last at `key` (the first, for a list of images)."""
    return media_files(run, key)[0]


def test_strips(run: MediaRun) -> tuple[list[Path], list[str]]:
    """The `test/reconstructions` strips of a run and their captions."""
    return media_files(run, keys.TEST_RECONSTRUCTIONS), media_captions(
        run, keys.TEST_RECONSTRUCTIONS
    )
