"""Offline source: run folders (`wandb/offline-run-*`), read with W&B's own reader `wandb leet inspect`."""

import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

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

_RUN_GLOBS = ("offline-run-*", "run-*")


def default_offline_dir() -> Path:
    """Where W&B writes offline runs: `$WANDB_DIR/wandb`, else `./wandb`."""
    return Path(os.environ.get("WANDB_DIR", ".")) / "wandb"


def find_run_dirs(offline_dir: str | Path) -> list[Path]:
    """Run folders (each with one `run-<id>.wandb`) under the `wandb/` folder or its parent."""
    root = Path(offline_dir)
    if (root / "wandb").is_dir() and not any(root.glob("offline-run-*")):
        root = root / "wandb"
    found = {
        p
        for pattern in _RUN_GLOBS
        for p in root.glob(pattern)
        if p.is_dir() and not p.is_symlink() and any(p.glob("run-*.wandb"))
    }
    return sorted(found)


def wandb_executable() -> str | None:
    """The `wandb` CLI of this Python environment (so its version matches the library), else PATH's."""
    local = Path(sys.executable).parent / "wandb"
    return str(local) if local.is_file() else shutil.which("wandb")


def leet_commands(wandb_file: Path) -> list[list[str]]:
    """Ways to run `wandb leet inspect --json FILE`, fastest first.

    The `wandb` CLI only forwards to the `wandb-core` binary after ~1 s of Python start-up; calling
    that binary the same way takes 0.05 s. Its flags are internal, so the CLI stays as the fallback.
    """
    commands = []
    try:
        from wandb.util import get_core_path

        core = get_core_path()
        run_file = ["--run-file", str(wandb_file), str(wandb_file.parent)]
        commands.append([core, "leet", "inspect", "--no-observability", "--json", *run_file])
    except Exception:  # no binary for this platform: the CLI says why
        pass
    exe = wandb_executable()
    if exe:
        commands.append([exe, "leet", "inspect", "--json", str(wandb_file)])
    return commands


def read_records(wandb_file: Path) -> list[dict[str, Any]]:
    """All records of a `.wandb` log as dicts: `{"type": "run" | "history" | ..., "<type>": {...}}`."""
    errors = []
    for cmd in leet_commands(wandb_file):
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode == 0:
            return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
        errors.append(proc.stderr.strip() or f"exit status {proc.returncode}")
    if not errors or all("No such command" in e for e in errors):
        raise AeLabError(_NO_READER)
    raise RuntimeError(errors[-1])


# wandb < 0.31 had a Python reader (`wandb.sdk.internal.datastore`); 0.31 removed it for `leet`.
_NO_READER = (
    "Reading offline W&B runs needs `wandb leet inspect` (wandb >= 0.31), which this environment "
    "lacks, and wandb 0.31 no longer ships the old `wandb.sdk.internal.datastore` reader. "
    "Install the project's requirements (`pip install -e .`) or analyse the synced runs online "
    "(drop --offline-dir after `wandb sync`)."
)


def raw_run_from_records(records: list[dict[str, Any]], run_dir: Path) -> RawRun:
    """Replay the log: the run record, config and summary updates, history rows, the exit record."""
    info: dict[str, Any] = {}
    config: dict[str, Any] = {}
    summary: dict[str, Any] = {}
    history: list[dict[str, Any]] = []
    exit_code: int | None = None
    for rec in records:
        kind = rec.get("type")
        body = rec.get(kind, {}) if kind else {}
        if kind == "run":
            info |= body
            config.update(body.get("config", {}).get("update", {}))
        elif kind == "config":
            config.update(body.get("update", {}))
        elif kind == "summary":
            # Updates hold nested dicts (`{"c": {"d": 2}}`) or dotted keys (`test/scores.path`).
            summary.update(flatten(body.get("update", {})))
            for item in body.get("remove", []):
                summary.pop(item.get("key") or ".".join(item.get("nested_key", [])), None)
        elif kind == "history":
            history.append(body.get("item", {}))
        elif kind == "exit":
            exit_code = int(body.get("exit_code", 0) or 0)
    config.pop("_wandb", None)
    if exit_code is None:
        state = "no exit record: crashed or still running"
    else:
        state = "finished" if exit_code == 0 else f"crashed (exit code {exit_code})"
    run_id = info.get("run_id") or run_dir.name.rsplit("-", 1)[-1]
    return RawRun(
        run_id=run_id,
        name=info.get("display_name") or run_id,
        project=info.get("project", ""),
        group=info.get("run_group") or None,
        state=state,
        config=config,
        summary=summary,
        history=history,
        scores=_read_scores(run_dir, summary),
        job_type=info.get("job_type"),
        sweep=info.get("sweep_id"),
        where=str(run_dir),
    )


def _read_scores(run_dir: Path, summary: dict[str, Any]):
    """The `test/scores` table file named in the summary, else the newest one in the media folder."""
    files = run_dir / "files"
    named = summary.get(f"{keys.TEST_SCORES}.path")
    candidates = [files / named] if named else []
    candidates += sorted(
        (files / "media" / "table").glob(f"{keys.TEST_SCORES}_*.table.json"),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for path in candidates:
        if path.is_file():
            return scores_from_table_json(json.loads(path.read_text()), str(path))
    return None


def load_offline_runs(
    project: str, offline_dir: str | Path, group: str | None = None, sweep: str | None = None
) -> RunData:
    """Every finished run of `project` (and `group`/`sweep`) under `offline_dir`."""
    root = Path(offline_dir)
    hint = (
        f"Check --offline-dir (now '{root}': the `wandb/` folder or the folder holding it) and "
        "--project, or run `make demo` to create runs."
    )
    if not root.is_dir():
        what = "is a file, not a folder" if root.exists() else "does not exist"
        raise AeLabError(
            f"--offline-dir '{root}' {what}. "
            "Pass the `wandb/` folder of your runs or the folder holding it (train.py writes them "
            "under $WANDB_DIR, default the current folder), or run `make demo` to create runs."
        )
    run_dirs = find_run_dirs(root)
    if not run_dirs:
        raise AeLabError(f"No W&B run folders (offline-run-*/run-*.wandb) under '{root}'. {hint}")
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        parsed = list(pool.map(_read_run_dir, run_dirs))
    raw, unreadable = [], []
    for run_dir, run, problem in parsed:
        if run is None:
            unreadable.append(f"skipped run folder {run_dir}: {problem}")
            log.warning(unreadable[-1])
            continue
        if run.project != project or run.job_type == ANALYSIS_JOB_TYPE:
            continue
        if group and group not in (run.group, (run.config.get("logger") or {}).get("group")):
            continue
        if sweep and run.sweep != sweep:
            continue
        raw.append(run)
    data = build_run_data(raw, project, group, f"offline folder '{root}'", hint)
    data.offline_root = run_dirs[0].parent.parent
    data.skipped = unreadable + data.skipped
    return data


def _read_run_dir(run_dir: Path) -> tuple[Path, RawRun | None, str]:
    wandb_file = next(run_dir.glob("run-*.wandb"))
    try:
        records = read_records(wandb_file)
    except (RuntimeError, json.JSONDecodeError) as err:
        return run_dir, None, f"`wandb leet inspect` could not read {wandb_file.name}: {err}"
    if not any(r.get("type") == "run" for r in records):
        # W&B buffers records; a process killed early leaves only the file header.
        return run_dir, None, "its log holds no run record (the process died before W&B flushed it)"
    try:
        return run_dir, raw_run_from_records(records, run_dir), ""
    except ValueError as err:  # a scores table without the expected columns
        return run_dir, None, str(err)
