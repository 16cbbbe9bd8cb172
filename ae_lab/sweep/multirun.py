"""Run a grid as one Hydra multirun of train.py, watch its run folders, summarise the outcome.

Hydra runs the grid (the joblib launcher for `--jobs N`). Kept here, because Hydra does not do it:
prepare each dataset once before any run, report each run as it starts and ends, stop every
process on Ctrl-C or SIGTERM, and print a summary table.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import OmegaConf

from ae_lab.errors import AeLabError, user_error
from ae_lab.overrides import hydra_value
from ae_lab.sweep.expand import SweepPoint
from ae_lab.sweep.spec import SweepSpec, sweep_overrides

Echo = Callable[[str], None]


@dataclass
class RunOutcome:
    """One grid point, in Hydra's job order; `status`: not run, running, ok, failed, interrupted."""

    index: int
    total: int
    name: str
    status: str = "not run"
    seconds: float = 0.0  # while running: the time it started
    result: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.index + 1:0{len(str(self.total))}d}/{self.total}"


class Stopped(BaseException):  # like KeyboardInterrupt, for SIGINT and SIGTERM
    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def multirun_command(
    spec: SweepSpec, points: list[SweepPoint], extra: list[str], sweep_dir: Path, group: str, jobs: int
) -> list[str]:  # fmt: skip
    """`python train.py -m <grid> <extra> ...`: run N lands in `sweep_dir/<N>-<run_name>/` and
    writes its `result.json` there, all runs log to W&B group `group`, `jobs > 1` uses joblib."""
    argv = [sys.executable, "train.py", "-m", *sweep_overrides(spec.parameters), *extra]
    argv += [
        f"hydra.sweep.dir={hydra_value(str(sweep_dir))}",
        "hydra.sweep.subdir=${hydra.job.num}-${run_name}",
        "result_file=${hydra:runtime.output_dir}/result.json",
    ]
    # W&B logging in every run and no group set by the sweep: the runner's group.
    if all(OmegaConf.select(p.config, "logger.group", default=False) is None for p in points):
        argv.append(f"logger.group={hydra_value(group)}")
    if jobs > 1:  # joblib gives each worker cores / jobs threads (OMP_NUM_THREADS)
        argv += ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={jobs}"]
    return argv


def run_names(points: list[SweepPoint]) -> list[str]:
    """The `<N>-<run_name>` subfolder Hydra gives each point (`hydra.sweep.subdir`)."""
    names = []
    for point in points:
        try:
            names.append(f"{point.index}-{point.config.run_name}")
        except Exception:  # an interpolation only the run resolves; its folder tells the name
            names.append(f"{point.index}-?")
    return names


def prepare_data(points: list[SweepPoint], root: Path, echo: Echo = print) -> dict[int, str]:
    """Generate and decode each distinct dataset once, before any run: parallel runs then do not
    queue on the data lock, and a missing dataset is reported once instead of once per run.

    Returns `{point index: error}` for the points whose data fails (their runs fail alone);
    raises AeLabError when every point's data fails.
    """
    import hydra

    errors: dict[str, str] = {}
    failed: dict[int, str] = {}
    for point in points:
        data = point.config.get("data")
        if data is None or "_target_" not in data:
            continue
        key = json.dumps(OmegaConf.to_container(data, resolve=True), sort_keys=True, default=str)
        if key not in errors:
            if not errors:
                echo(f"[sweep] preparing the data once, before the runs: {data.get('root')}")
            cwd, errors[key] = Path.cwd(), ""
            os.chdir(root)  # relative data/cache paths mean what they mean to train.py
            try:
                hydra.utils.instantiate(data).prepare_data()
            except Exception as err:  # `data.batch_size=0` arrives wrapped by instantiate
                errors[key] = str(user_error(err) or f"{type(err).__name__}: {err}")
            finally:
                os.chdir(cwd)
        if errors[key]:
            failed[point.index] = errors[key]
    if failed and len(failed) == len(points):
        raise AeLabError(f"No run of the grid can start: {next(iter(failed.values()))}")
    for index, error in failed.items():
        echo(f"[sweep] grid point {index} will fail, the others run: {error}")
    return failed


def run_multirun(
    argv: list[str], root: Path, outcomes: list[RunOutcome], sweep_dir: Path, echo: Echo = print
) -> int:
    """Run the multirun, its output in `sweep_dir/multirun.log`, and fill `outcomes` as runs start
    and end. Returns its exit status, or 128 + signal after Ctrl-C/SIGTERM, which stop it and
    every process it started (it runs in a process group of its own)."""
    sweep_dir.mkdir(parents=True)  # a new folder: runs are told apart by their folders
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def stop(signum: int, frame: Any) -> None:
        raise Stopped(signum)

    with (sweep_dir / "multirun.log").open("w") as log:
        proc = subprocess.Popen(
            argv, cwd=root, env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            for sig in previous:
                signal.signal(sig, stop)
            while proc.poll() is None:
                _update(outcomes, sweep_dir, echo)
                time.sleep(0.5)
            _update(outcomes, sweep_dir, echo, end="failed")
            return proc.returncode
        except Stopped as stopped:
            echo(f"[sweep] {stopped}: stopping every run")
            _stop_group(proc)
            _update(outcomes, sweep_dir, echo, end="interrupted")
            return 128 + stopped.signum
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _stop_group(proc: subprocess.Popen, grace: float = 20.0) -> None:
    """SIGTERM to the multirun's process group (it, its joblib workers and their children), then
    SIGKILL to whatever is left after `grace` seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        deadline = time.monotonic() + wait
        try:
            os.killpg(proc.pid, sig)
            while time.monotonic() < deadline:
                proc.poll()  # reap the multirun itself, so only live processes are left
                os.killpg(proc.pid, 0)  # raises once no process of the group is left
                time.sleep(0.2)
        except ProcessLookupError:
            return


def _update(outcomes: list[RunOutcome], sweep_dir: Path, echo: Echo, end: str = "") -> None:
    """A run starts when Hydra creates its folder and ends when it writes `result.json`; `end`
    is the status of runs still going when the multirun has ended."""
    now = time.monotonic()
    for o in outcomes:
        if o.status == "not run":
            found = [p for p in sweep_dir.glob(f"{o.index}-*") if (p / ".hydra").is_dir()]
            if not found:
                continue
            o.name, o.status, o.seconds = found[0].name, "running", now
            echo(f"[sweep] {o.label} start   {o.name}")
        if o.status != "running":
            continue
        try:
            o.result = json.loads((sweep_dir / o.name / "result.json").read_text())
        except (OSError, ValueError):
            if not end:
                continue
        o.status = o.result.get("status") if o.result.get("status") in ("ok", "failed") else end
        o.seconds = float(o.result.get("seconds", now - o.seconds))
        error = re.sub(r"\s+", " ", str(o.result.get("error") or "no result, see multirun.log"))
        hint = "" if o.status == "ok" else f": {error[:200]}"
        echo(f"[sweep] {o.label} {o.status:9s} {o.name} ({_fmt_time(o.seconds)}){hint}")


def _fmt_time(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def summary_table(outcomes: list[RunOutcome], metric: str | None, goal: str = "maximize") -> str:
    """One row per run: number, name, status, wall time, the sweep's metric (best marked `*`)."""
    values = {o.index: o.result.get(metric) for o in outcomes} if metric else {}
    numeric = {i: float(v) for i, v in values.items() if isinstance(v, int | float)}
    best = (max if goal == "maximize" else min)(numeric, key=numeric.get) if numeric else None
    rows = []
    for o in outcomes:
        value = numeric.get(o.index)
        shown = "-" if value is None else f"{value:.4f}" + (" *" if o.index == best else "")
        rows.append([o.label, o.name, o.status, _fmt_time(o.seconds), shown])
    table = pd.DataFrame(rows, columns=["#", "run", "status", "time", metric or "metric"])
    # tabulate's plain "simple" layout (header, dashes, rows); cells stay as written, not re-parsed.
    text = table.to_markdown(index=False, tablefmt="simple", disable_numparse=True)
    return "\n".join(line.rstrip() for line in text.splitlines())
