"""The run types both sources (W&B API, offline run folders) share: one raw run in, three
DataFrames out. Each source imports this module; `ae_lab.analysis.load` picks the source.

`runs`: one row per usable run: run_id, name, label (unique display name), group, state, model,
loss, latent_dim, classes (`data.categories` joined by +), then every numeric summary metric `test/...`.
`history`: one row per (run_id, epoch): run_id, epoch, train/loss, val/loss, val/l1, val/l2, val/one_minus_ssim.
`scores`: run_id + `keys.SCORE_COLUMNS`, one row per test image.
"""

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ae_lab import keys
from ae_lab.errors import AeLabError

log = logging.getLogger("ae_lab.analysis")

RUN_COLUMNS = (
    "run_id", "name", "label", "group", "state", "model", "loss", "latent_dim", "classes",
)  # fmt: skip
HISTORY_COLUMNS = ("run_id", keys.EPOCH, *keys.LOSS_CURVES)
ANALYSIS_JOB_TYPE = "analysis"


@dataclass
class RawRun:
    """One run as a source reads it, before any check. `summary` keys are flat (`a.b` for nesting)."""

    run_id: str
    name: str
    project: str
    group: str | None
    state: str  # finished | crashed | running | ...; offline: from the exit record
    config: dict[str, Any]
    summary: dict[str, Any]
    history: list[dict[str, Any]]
    scores: pd.DataFrame | None
    job_type: str | None = None
    sweep: str | None = None
    where: str = ""  # folder or URL, for messages


@dataclass
class RunData:
    """The three DataFrames every analysis function takes, plus what was left out and why."""

    runs: pd.DataFrame
    history: pd.DataFrame
    scores: pd.DataFrame
    project: str
    group: str | None
    source: str  # "offline <dir>" or "api <entity/project>"
    offline_root: Path | None = None  # folder holding `wandb/`, where the analysis run goes
    skipped: list[str] = field(default_factory=list)


def config_value(config: dict[str, Any], dotted: str) -> Any:
    """`config["model"]["name"]` for `model.name`; also accepts flattened `model.name`/`model/name` keys."""
    node: Any = config
    for part in dotted.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
            if isinstance(node, dict) and set(node) == {"value"}:  # API configs may wrap values
                node = node["value"]
        else:
            node = None
            break
    if node is not None:
        return node
    for flat in (dotted, dotted.replace(".", "/")):
        if flat in config:
            return config[flat]
    return None


def scores_from_table_json(obj: dict[str, Any], where: str) -> pd.DataFrame:
    """A `wandb.Table` JSON file (`{"columns": [...], "data": [[...], ...]}`) to the scores frame."""
    df = pd.DataFrame(obj.get("data", []), columns=obj.get("columns", []))
    missing = [c for c in keys.SCORE_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"table {where} lacks columns {missing}")
    df = df[list(keys.SCORE_COLUMNS)].copy()
    df["label"] = df["label"].astype(int)
    for col in ("score", "l1", "l2", "ssim"):
        df[col] = df[col].astype(float)
    df["has_mask"] = df["has_mask"].astype(bool)
    return df


def history_frame(run_id: str, rows: list[dict[str, Any]]) -> pd.DataFrame:
    """History rows (each may hold only some keys: train and val are logged apart) -> one row per epoch."""
    wanted = [k for k in keys.LOSS_CURVES]
    kept = [
        {k: r[k] for k in (keys.EPOCH, *wanted) if k in r and _is_number(r[k])}
        for r in rows
        if _is_number(r.get(keys.EPOCH))
    ]
    frame = pd.DataFrame(kept, columns=[keys.EPOCH, *wanted])
    if frame.empty:
        return pd.DataFrame(columns=list(HISTORY_COLUMNS))
    frame[keys.EPOCH] = frame[keys.EPOCH].astype(int)
    # The last value logged for an epoch wins, as in W&B's own charts.
    frame = frame.groupby(keys.EPOCH, sort=True).last().reset_index()
    frame.insert(0, "run_id", run_id)
    return frame[list(HISTORY_COLUMNS)]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def usable_reason(run: RawRun) -> str | None:
    """Why a run cannot be analysed, or None."""
    if run.state != "finished":
        return f"state '{run.state}'"
    if run.scores is None or run.scores.empty:
        return f"no `{keys.TEST_SCORES}` table (was the test stage run?)"
    return None


def build_run_data(
    raw: list[RawRun], project: str, group: str | None, source: str, hint: str
) -> RunData:
    """Check every run, warn once per skipped run, and fill the three frames."""
    rows, histories, scores, skipped = [], [], [], []
    for run in raw:
        reason = usable_reason(run)
        if reason:
            msg = f"skipped run {run.name} ({run.run_id}, {run.where}): {reason}"
            log.warning(msg)
            skipped.append(msg)
            continue
        row = {
            "run_id": run.run_id,
            "name": config_value(run.config, "run_name") or run.name,
            "group": run.group or config_value(run.config, "logger.group"),
            "state": run.state,
            "model": config_value(run.config, "model.name"),
            "loss": config_value(run.config, "loss.name"),
            "latent_dim": config_value(run.config, "model.latent_dim"),
            "classes": _classes(config_value(run.config, "data.categories")),
        }
        # Dotted keys are media metadata (`test/scores.nrows`), not metrics.
        row |= {
            k: float(v)
            for k, v in sorted(run.summary.items())
            if k.startswith("test/") and "." not in k and _is_number(v)
        }
        rows.append(row)
        histories.append(history_frame(run.run_id, run.history))
        scores.append(run.scores.assign(run_id=run.run_id)[["run_id", *keys.SCORE_COLUMNS]])
    if not rows:
        where = f" group '{group}'" if group else ""
        raise AeLabError(
            f"No usable W&B runs in project '{project}'{where} from {source} "
            f"({len(raw)} run(s) found, {len(skipped)} skipped: crashed, unfinished or without a "
            f"`{keys.TEST_SCORES}` table). {hint}"
        )
    runs = pd.DataFrame(rows).sort_values(
        ["model", "loss", "latent_dim", "classes", "name"], ignore_index=True
    )
    runs.insert(2, "label", _unique_labels(runs))
    return RunData(
        runs=runs,
        history=pd.concat(histories, ignore_index=True),
        scores=pd.concat(scores, ignore_index=True),
        project=project,
        group=group,
        source=source,
        skipped=skipped,
    )


def _classes(categories: Any) -> str | None:
    """`data.categories` as one string (`cable+screw`); W&B may hand a list or its text."""
    if isinstance(categories, str):
        categories = [c.strip(" '\"") for c in categories.strip("[]").split(",")]
    return "+".join(str(c) for c in categories) if categories else None


def _unique_labels(runs: pd.DataFrame) -> list[str]:
    names = runs["name"].astype(str)
    if runs["classes"].nunique(dropna=False) > 1:
        # One model per class (sweeps/grid_per_class.yaml): the class is part of the run's identity.
        names = names + " [" + runs["classes"].astype(str) + "]"
    dup = names.duplicated(keep=False)
    return [f"{n} ({i})" if d else n for n, i, d in zip(names, runs["run_id"], dup, strict=True)]
