"""`load_runs`: the training runs of a W&B project as three DataFrames, from one of two sources.

Online, `wandb.Api()`; offline, the run folders (`wandb/offline-run-*`), read with W&B's own
reader, the public CLI `wandb leet inspect --json` (an offline folder holds no summary or config
file: they live in the run's `.wandb` log). Either way the per-image scores come from the
`test/scores` table file the summary names. Runs that crashed, are unfinished, damaged or lack
`test/scores` are skipped with a warning.

`runs`: one row per run: run_id, name, label (unique display name), group, state, model, loss,
latent_dim, classes (`data.categories` joined by +), then every numeric `test/...` summary value.
`history`: one row per (run_id, epoch): `keys.LOSS_CURVES`. `scores`: run_id + `keys.SCORE_COLUMNS`
(+ `loss`, the error in the run's own loss, when the run logged it).

One run is read back by `media_files` (the files it logged at a key) and `checkpoint_predictions`
(its best checkpoint run again on chosen test images).
"""

import functools
import json
import logging
import math
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ae_lab import keys
from ae_lab.config import flatten
from ae_lab.errors import AeLabError
from ae_lab.wandb_mode import ensure_wandb_mode

logger = logging.getLogger("ae_lab.analysis")
ANALYSIS_JOB_TYPE = "analysis"


@dataclass
class RawRun:
    """One run as a source reads it, before any check; `summary` keys are flat (`a.b`)."""

    run_id: str
    name: str
    group: str | None
    state: str  # finished | crashed | ...
    config: dict[str, Any]
    summary: dict[str, Any]
    where: str  # folder or URL, for messages
    history: list[dict[str, Any]] = field(default_factory=list)
    scores: pd.DataFrame | None = None
    scores_problem: str | None = None  # why `scores` is None although the summary names a table


@dataclass
class RunData:
    """The three DataFrames every analysis function takes, plus what was left out and why."""

    runs: pd.DataFrame
    history: pd.DataFrame
    scores: pd.DataFrame
    project: str
    group: str | None  # the one asked for, else the runs' group when they share one
    source: str  # "offline folder '<dir>'" or "W&B API '<entity/project>'"
    offline_root: Path | None = None  # folder holding `wandb/`, where the analysis run goes
    skipped: list[str] = field(default_factory=list)


def load_runs(
    project: str,
    entity: str | None = None,
    group: str | None = None,
    sweep: str | None = None,
    offline_dir: str | Path | None = None,
    api: Any = None,
) -> RunData:
    """Offline folders when `offline_dir` is given or W&B is offline or without credentials, else
    the W&B API (`api`, default `wandb.Api()`)."""
    if api is None and (offline_dir is not None or ensure_wandb_mode() != "online"):
        return load_offline_runs(project, offline_dir, group, sweep)
    if api is None:
        import wandb

        api = wandb.Api()
    path = f"{entity or api.default_entity}/{project}"
    filters = {k: v for k, v in (("group", group), ("sweep", sweep)) if v}
    hint = "Check --project/--entity/--group/--sweep, or run `make demo` to create runs."
    try:
        listed = [r for r in api.runs(path, filters=filters) if r.job_type != ANALYSIS_JOB_TYPE]
    except Exception as err:  # wandb raises CommError/ValueError for unknown projects
        raise AeLabError(f"Could not list the runs of W&B project '{path}': {err}. {hint}") from err
    with tempfile.TemporaryDirectory(prefix="ae-lab-scores-") as tmp:
        raw = [_api_run(run, Path(tmp)) for run in listed]
    return run_data(raw, project, group, f"W&B API '{path}'", hint)


def _api_run(run: Any, tmp: Path) -> RawRun:
    """A finished run with its history and scores table (downloaded); others without them."""
    summary = flatten(run.summary_metrics)
    raw = RawRun(run.id, run.name, run.group, run.state, dict(run.config), summary, run.url)
    name = raw.summary.get(f"{keys.TEST_SCORES}.path")
    if run.state != "finished" or not name:
        return raw
    raw.history = [dict(r) for r in run.scan_history()]  # every row: train and val are apart
    try:
        run.file(name).download(root=str(tmp / run.id), replace=True)
        raw.scores = scores_frame(tmp / run.id / name)
    except Exception as err:  # a missing or malformed file skips this run, not the analysis
        logger.warning(f"run {run.name} ({run.id}): could not read {name}: {err}")
    return raw


def find_run_dirs(offline_dir: str | Path) -> list[Path]:
    """Run folders (each with one `run-<id>.wandb`) under the `wandb/` folder or its parent."""
    root = Path(offline_dir)
    if (root / "wandb").is_dir() and not any(root.glob("offline-run-*")):
        root = root / "wandb"
    dirs = [*root.glob("offline-run-*"), *root.glob("run-*")]
    return sorted(p for p in dirs if p.is_dir() and not p.is_symlink() and any(p.glob("*.wandb")))


def read_records(wandb_file: Path) -> list[dict[str, Any]]:
    """The records of a `.wandb` log as dicts (`{"type": "run" | "history" | ..., ...}`), read by
    `wandb leet inspect --json`; RuntimeError when the log is unreadable or damaged."""
    stat = wandb_file.stat()  # a log still being written is read again
    return _read_records(str(wandb_file), stat.st_mtime_ns, stat.st_size)


@functools.cache  # the notebook and the tests read the same logs again in one process
def _read_records(path: str, mtime_ns: int, size: int) -> list[dict[str, Any]]:
    cmd = [sys.executable, "-m", "wandb", "leet", "inspect", "--json", path]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    # The reader skips what fails its checksum and says so: such a run is not analysed.
    if proc.returncode != 0 or "corrupt" in proc.stderr:
        raise RuntimeError(proc.stderr.strip() or f"exit status {proc.returncode}")
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


def offline_run(run_dir: Path) -> tuple[dict[str, Any], RawRun] | str:
    """(the run record, the run) replayed from the folder's log, or why it cannot be read."""
    info, config, summary, history, exit_code = {}, {}, {}, [], None
    try:
        for rec in read_records(next(run_dir.glob("*.wandb"))):
            body = rec.get(rec["type"], {})
            if rec["type"] == "run":
                info = body
                config.update(body.get("config", {}).get("update", {}))
            elif rec["type"] == "config":
                config.update(body.get("update", {}))
            elif rec["type"] == "summary":
                summary.update(flatten(body.get("update", {})))  # ae-lab never removes keys
            elif rec["type"] == "history":
                history.append(body.get("item", {}))
            elif rec["type"] == "exit":
                exit_code = int(body.get("exit_code", 0) or 0)
        if not info:  # W&B buffers records: a run just started, or killed early, has only a header
            return (
                f"skipped run folder {run_dir}: its W&B log holds no run record yet: the run is "
                "still running (W&B has not flushed its log) or its process died before W&B "
                "flushed it. Rerun the analysis once the run has finished."
            )
        named = summary.get(f"{keys.TEST_SCORES}.path")
        table = run_dir / "files" / str(named)
        scores = scores_frame(table) if table.is_file() else None
    except (RuntimeError, ValueError) as err:  # damaged log, bad JSON, a table without columns
        return f"skipped run folder {run_dir}: its W&B log is unreadable or damaged: {err}"
    unfinished = (
        "no exit record: crashed, or still running (rerun the analysis once it has finished)"
    )
    state = {None: unfinished, 0: "finished"}.get(exit_code, f"crashed (exit code {exit_code})")
    config.pop("_wandb", None)
    name, group = info.get("display_name") or info["run_id"], info.get("run_group")
    raw = RawRun(info["run_id"], name, group, state, config, summary, str(run_dir), history, scores)
    if named and scores is None:  # the media folder did not come along with the log
        raw.scores_problem = (
            f"its summary names the `{keys.TEST_SCORES}` table {table}, which is missing (was "
            "the run folder copied without its files/media/ folder? copy the whole folder)"
        )
    return info, raw


def load_offline_runs(
    project: str, offline_dir: str | Path | None, group: str | None, sweep: str | None
) -> RunData:
    """Every run of `project` (and `group`/`sweep`) under `offline_dir` (default: `$WANDB_DIR/wandb`
    or `./wandb`)."""
    root = Path(offline_dir or Path(os.environ.get("WANDB_DIR", ".")) / "wandb")
    hint = (
        f"Check --offline-dir (now '{root}': the `wandb/` folder of the runs, which train.py writes "
        "under $WANDB_DIR, or the folder holding it) and --project, or run `make demo`."
    )
    run_dirs = find_run_dirs(root) if root.is_dir() else []
    if not run_dirs:
        raise AeLabError(f"No W&B run folders (offline-run-*/run-*.wandb) under '{root}'. {hint}")
    with ThreadPoolExecutor(max_workers=4) as pool:
        parsed = list(pool.map(offline_run, run_dirs))
    unreadable = [p for p in parsed if isinstance(p, str)]
    for problem in unreadable:
        logger.warning(problem)
    raw = [
        run
        for info, run in (p for p in parsed if not isinstance(p, str))
        if info.get("project") == project
        and info.get("job_type") != ANALYSIS_JOB_TYPE
        and (not group or group in (run.group, run.config.get("logger", {}).get("group")))
        and (not sweep or info.get("sweep_id") == sweep)
    ]
    data = run_data(raw, project, group, f"offline folder '{root}'", hint)
    data.offline_root = run_dirs[0].parent.parent
    data.skipped = unreadable + data.skipped
    return data


def scores_frame(path: Path) -> pd.DataFrame:
    """A `wandb.Table` file (`{"columns": [...], "data": [[...], ...]}`) to the scores frame."""
    obj = json.loads(path.read_text())
    df = pd.DataFrame(obj.get("data", []), columns=obj.get("columns", []))
    missing = [c for c in keys.SCORE_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"table {path} lacks columns {missing}")
    floats = ["score", "l1", "l2", "ssim", *(["loss"] if "loss" in df else [])]
    columns = [*keys.SCORE_COLUMNS, *floats[4:]]
    return df[columns].astype({"label": int, "has_mask": bool} | dict.fromkeys(floats, float))


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _history(run_id: str, rows: list[dict[str, Any]]) -> pd.DataFrame:
    """History rows (train and val logged apart) -> one row per epoch, the last value winning."""
    columns = [keys.EPOCH, *keys.LOSS_CURVES]
    rows = [
        {k: r[k] for k in columns if _number(r.get(k))} for r in rows if _number(r.get("epoch"))
    ]
    frame = pd.DataFrame(rows, columns=columns).astype({keys.EPOCH: int})
    frame = frame.groupby(keys.EPOCH, sort=True).last().reset_index()
    return frame.assign(run_id=run_id)[["run_id", *columns]]


def run_data(raw: list[RawRun], project: str, group: str | None, source: str, hint: str) -> RunData:
    """Check every run, warn once per skipped run, and fill the three frames."""
    rows, histories, scores, skipped = [], [], [], []
    for run in raw:
        reason = f"state '{run.state}'" if run.state != "finished" else None
        if not reason and (run.scores is None or run.scores.empty):
            reason = (
                run.scores_problem or f"no `{keys.TEST_SCORES}` table (was the test stage run?)"
            )
        if not reason and not _number(run.summary.get(keys.TEST_IMAGE_AUROC)):
            # metrics.image_metrics logs no AUROC where it is undefined: nothing to rank it by.
            reason = (
                f"no `{keys.TEST_IMAGE_AUROC}` in its summary: its test set has only good or only "
                "defective images in every class, so image AUROC is undefined (test on a set with "
                "both)"
            )
        if reason:
            skipped.append(f"skipped run {run.name} ({run.run_id}, {run.where}): {reason}")
            logger.warning(skipped[-1])
            continue
        cfg, model = run.config, run.config.get("model", {})
        row = dict(run_id=run.run_id, name=cfg.get("run_name") or run.name, state=run.state)
        row |= dict(group=run.group or cfg.get("logger", {}).get("group"), model=model.get("name"))
        row |= dict(loss=cfg.get("loss", {}).get("name"), latent_dim=model.get("latent_dim"))
        row["classes"] = _classes(cfg.get("data", {}).get("categories"))
        row["image_size"] = cfg.get("data", {}).get("image_size")
        row["seed"] = cfg.get("seed")
        row["checkpoint"] = run.summary.get(keys.CHECKPOINT_BEST)  # a path on the training machine
        # Dotted keys are media metadata (`test/scores.nrows`), not metrics.
        metrics = {k: v for k, v in run.summary.items() if k.startswith("test/") and "." not in k}
        rows.append(row | {k: float(v) for k, v in sorted(metrics.items()) if _number(v)})
        histories.append(_history(run.run_id, run.history))
        scores.append(run.scores.assign(run_id=run.run_id))
    if not rows:
        where = f" group '{group}'" if group else ""
        raise AeLabError(
            f"No usable W&B runs in project '{project}'{where} from {source} "
            f"({len(raw)} run(s) found, {len(skipped)} skipped: crashed, unfinished, without a "
            f"`{keys.TEST_SCORES}` table or without an image AUROC). {hint}"
        )
    order = ["model", "loss", "latent_dim", "classes", "name"]
    runs = pd.DataFrame(rows).sort_values(order, ignore_index=True)
    runs.insert(2, "label", _unique_labels(runs))
    scores = pd.concat(scores, ignore_index=True)
    scores = scores[["run_id", *scores.columns.drop("run_id")]]
    history = pd.concat(histories, ignore_index=True)
    groups = runs["group"].dropna().unique()
    group = group or (str(groups[0]) if len(groups) == 1 else None)
    return RunData(runs, history, scores, project, group, source, skipped=skipped)


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


# ---- one run read back: the media it logged, its best checkpoint --------------------------------
@functools.cache
def open_run(run_id: str, wandb_dir: Path | None = None, project: str | None = None):
    """(flat summary, files folder or API run) of `run_id`: offline under `wandb_dir` (the folder
    holding `wandb/`), else through the W&B API in `project`."""
    if project is not None:
        import wandb

        run = wandb.Api().run(f"{project}/{run_id}")
        return flatten(run.summary_metrics), run
    folder = next((d for d in find_run_dirs(wandb_dir) if d.name.endswith(f"-{run_id}")), None)
    if folder is None:
        raise AeLabError(
            f"No offline W&B run folder for run '{run_id}' under {wandb_dir}/wandb: set WANDB_DIR "
            "(the notebook's WANDB_DIR parameter) to the folder the runs were written to."
        )
    read = offline_run(folder)
    if isinstance(read, str):  # why the log cannot be read
        raise AeLabError(read)
    return read[1].summary, folder / "files"


def media_files(
    run_id: str, key: str, wandb_dir: Path | None = None, project: str | None = None
) -> list[tuple[Path, str]]:
    """(file, caption) of each medium the run logged last at `key`. The summary names them
    (`<key>.path`, or `<key>.filenames` and `<key>.captions` for a list); offline they lie in the
    run folder, online they are downloaded into `reports/notebook/media/<id>/`."""
    summary, where = open_run(run_id, wandb_dir, project)
    names = summary.get(f"{key}.filenames") or [summary.get(f"{key}.path")]
    if None in names:
        logged = sorted(k.rsplit(".", 1)[0] for k in summary if k.endswith((".path", ".filenames")))
        raise AeLabError(
            f"Run {run_id} has no media at `{key}` in its summary; it has: "
            f"{', '.join(logged) or 'none'}. Was the run trained with the W&B logger and tested?"
        )
    captions = summary.get(f"{key}.captions") or [summary.get(f"{key}.caption", "")] * len(names)
    if not isinstance(where, Path):  # online: download into the notebook's media cache
        run, where = where, Path("reports/notebook/media") / run_id
        for name in names:
            run.file(name).download(root=str(where), exist_ok=True).close()
    return [(where / n, c) for n, c in zip(names, captions, strict=True)]


def checkpoint_predictions(checkpoint: str | Path, paths: list[str]):
    """Reload a run's checkpoint (`weights_only`: tensors and plain values) and its own data
    config, and predict the test images `paths`: (`ae_lab.batch.Batch`, `Predictions`), in the
    order of `paths`. KeyError names a path the data no longer holds."""
    import torch  # lazy: reading runs needs neither torch nor Lightning

    from ae_lab.module import AutoencoderModule

    module = AutoencoderModule.load_from_checkpoint(
        checkpoint, weights_only=True, map_location="cpu"
    )
    saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
    data = _test_data(json.dumps(saved["hyper_parameters"]["config"]["data"], sort_keys=True))
    position = {path: i for i, path in enumerate(data.table("test")["path"])}
    batch = data.dataset("test").__getitems__([position[p] for p in paths])
    return batch, module.eval().predict(batch)


@functools.cache  # the runs of a grid share their data: decoded once
def _test_data(config: str):
    import hydra

    data = hydra.utils.instantiate(json.loads(config))
    data.prepare_data()
    data.setup("test")
    return data
