"""Online source: runs of a W&B project through `wandb.Api()` (config, summary, history, scores table)."""

import json
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from ae_lab import keys
from ae_lab.analysis.sources import (
    ANALYSIS_JOB_TYPE,
    RawRun,
    RunData,
    build_run_data,
    log,
    scores_from_table_json,
)
from ae_lab.errors import AeLabError
from ae_lab.errors import flatten


def load_api_runs(
    project: str,
    entity: str | None = None,
    group: str | None = None,
    sweep: str | None = None,
    api: Any = None,
) -> RunData:
    """Every finished run of `entity/project` (filtered by group or sweep); `api` defaults to `wandb.Api()`."""
    if api is None:
        import wandb

        api = wandb.Api()
    entity = entity or api.default_entity
    path = f"{entity}/{project}" if entity else project
    filters: dict[str, str] = {}
    if group:
        filters["group"] = group
    if sweep:
        filters["sweep"] = sweep
    hint = "Check --project/--entity/--group/--sweep, or run `make demo` to create runs."
    try:
        listed = [r for r in api.runs(path, filters=filters) if r.job_type != ANALYSIS_JOB_TYPE]
    except Exception as err:  # wandb raises CommError/ValueError for unknown projects
        raise AeLabError(f"Could not list the runs of W&B project '{path}': {err}. {hint}") from err
    with tempfile.TemporaryDirectory(prefix="ae-lab-scores-") as tmp:
        raw = [_raw_run(run, project, Path(tmp)) for run in listed]
    return build_run_data(raw, project, group, f"W&B API '{path}'", hint)


def _raw_run(run: Any, project: str, tmp: Path) -> RawRun:
    summary = flatten(_plain(run.summary))
    finished = run.state == "finished"
    return RawRun(
        run_id=run.id,
        name=run.name,
        project=project,
        group=run.group,
        state=run.state,
        config=dict(run.config),
        summary=summary,
        # Skipped runs are not downloaded: they are left out anyway.
        history=_history(run) if finished else [],
        scores=_scores(run, summary, tmp) if finished else None,
        job_type=run.job_type,
        where=getattr(run, "url", "") or f"{project}/{run.id}",
    )


def _plain(value: Any) -> Any:
    """W&B's summary (and its nested `SummarySubDict`s) to plain dicts; they have `items()` but are
    not dicts and cannot be iterated directly."""
    if hasattr(value, "items") and not isinstance(value, str):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _history(run: Any) -> list[dict[str, Any]]:
    """One scan per key: `scan_history(keys=...)` returns only rows holding every key asked for, and
    Lightning logs the train and val metrics in separate rows."""
    rows: list[dict[str, Any]] = []
    for key in keys.LOSS_CURVES:
        rows += [dict(r) for r in run.scan_history(keys=[keys.EPOCH, key])]
    return rows


def _scores(run: Any, summary: dict[str, Any], tmp: Path) -> pd.DataFrame | None:
    """Download the table file the summary points to (`test/scores.path`) and parse it."""
    name = summary.get(f"{keys.TEST_SCORES}.path")
    if not name:
        return None
    root = tmp / run.id
    try:
        run.file(name).download(root=str(root), replace=True)
        obj = json.loads((root / name).read_text())
        return scores_from_table_json(obj, f"{run.id}:{name}")
    except Exception as err:  # a missing or malformed file skips this run, not the analysis
        log.warning(f"run {run.name} ({run.id}): could not read {name}: {err}")
        return None
