"""Run a grid offline: one `train.py` process per point, `jobs` at a time, then a summary table.

Each run is its own process, so a crash is reported and the others go on; its stdout/stderr go to
`<out_dir>/<NN>-<run_name>.log` and its final metrics to `<out_dir>/<NN>-<run_name>/result.json`.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from ae_lab.cli import hydra_value
from ae_lab.sweep.expand import SweepPoint

_MISSING = object()


@dataclass(frozen=True)
class PlannedRun:
    """One train.py process: `argv` runs from the repository root with `env` added."""

    index: int
    total: int
    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    result_path: Path
    max_epochs: int | None = None

    @property
    def label(self) -> str:
        return f"{self.index + 1:0{len(str(self.total))}d}/{self.total}"

    def shell(self) -> str:
        """The command as one copy-pasteable shell line."""
        env = [f"{k}={shlex.quote(v)}" for k, v in self.env.items()]
        return " ".join([*env, shlex.join(self.argv)])


@dataclass
class RunOutcome:
    run: PlannedRun
    returncode: int | None = None  # None: interrupted or never started
    seconds: float = 0.0
    started: bool = False
    result: dict[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> str:
        if self.returncode == 0:
            return "ok"
        if self.returncode is not None:
            return f"failed ({self.returncode})"
        return "interrupted" if self.started else "not run"


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def plan_runs(points: list[SweepPoint], out_dir: Path, group: str, jobs: int) -> list[PlannedRun]:
    """Commands for every point: its overrides plus the W&B group, run folder, result file and,
    with `jobs > 1`, an even share of the CPU threads (`torch.num_threads` and `OMP_NUM_THREADS`)."""
    threads = max(1, available_cores() // jobs)
    runs = []
    for point in points:
        cfg = point.config
        name = f"{point.index:02d}-{_run_name(point)}"
        run_dir = out_dir / name
        extra = [f"hydra.run.dir={hydra_value(str(run_dir))}"]
        key = "result_file" if "result_file" in cfg else "+result_file"
        extra.append(f"{key}={hydra_value(str(run_dir / 'result.json'))}")
        if OmegaConf.select(cfg, "logger.group", default=_MISSING) is not _MISSING:
            extra.append(f"logger.group={hydra_value(group)}")
        env = {}
        if jobs > 1:
            env = {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
            if OmegaConf.select(cfg, "torch.num_threads", default=_MISSING) is not _MISSING:
                extra.append(f"torch.num_threads={threads}")
        epochs = OmegaConf.select(cfg, "trainer.max_epochs", default=None)
        runs.append(
            PlannedRun(
                index=point.index,
                total=len(points),
                name=name,
                argv=[sys.executable, "train.py", *point.overrides, *extra],
                env=env,
                log_path=out_dir / f"{name}.log",
                result_path=run_dir / "result.json",
                max_epochs=epochs if isinstance(epochs, int) else None,
            )
        )
    return runs


def _run_name(point: SweepPoint) -> str:
    try:
        name = str(OmegaConf.select(point.config, "run_name", default=None) or "")
    except Exception:  # an interpolation only train.py can resolve
        name = ""
    name = name or "-".join(str(v) for v in point.values.values()) or "run"
    return re.sub(r"[^\w.=+-]+", "_", name)[:80]


def prepare_data(points: list[SweepPoint], root: Path, echo: Callable[[str], None] = print) -> None:
    """Generate and decode each distinct dataset once, before any run starts: parallel runs
    would otherwise race to write the same synthetic set and decode caches."""
    import hydra

    seen: set[str] = set()
    for point in points:
        data = point.config.get("data")
        if data is None or "_target_" not in data:
            continue
        key = json.dumps(OmegaConf.to_container(data, resolve=True), sort_keys=True, default=str)
        if key in seen:
            continue
        seen.add(key)
        echo(f"[sweep] preparing data once for all runs: {data.get('root')}")
        cwd = Path.cwd()
        os.chdir(root)  # relative data/cache paths mean what they mean to train.py
        try:
            hydra.utils.instantiate(data).prepare_data()
        finally:
            os.chdir(cwd)


def run_all(
    runs: list[PlannedRun],
    root: Path,
    jobs: int = 1,
    echo: Callable[[str], None] = print,
    progress_every: float = 30.0,
) -> list[RunOutcome]:
    """Run everything, `jobs` at a time; Ctrl-C stops the running processes and returns early."""
    outcomes = {run.index: RunOutcome(run) for run in runs}
    pending = list(runs)
    active: dict[int, tuple[subprocess.Popen, float, Any]] = {}
    last_report = time.monotonic()
    try:
        while pending or active:
            while pending and len(active) < jobs:
                run = pending.pop(0)
                run.log_path.parent.mkdir(parents=True, exist_ok=True)
                log = run.log_path.open("w")
                log.write(f"# {run.shell()}\n# cwd: {root}\n")
                log.flush()
                env = {**os.environ, **run.env, "PYTHONUNBUFFERED": "1"}
                proc = subprocess.Popen(
                    run.argv, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT
                )
                active[run.index] = (proc, time.monotonic(), log)
                outcomes[run.index].started = True
                echo(f"[sweep] {run.label} start   {run.name}")
            for index, (proc, start, log) in list(active.items()):
                if proc.poll() is None:
                    continue
                log.close()
                del active[index]
                outcome = outcomes[index]
                outcome.returncode, outcome.seconds = proc.returncode, time.monotonic() - start
                outcome.result = _read_result(outcome.run.result_path)
                echo(f"[sweep] {outcome.run.label} {outcome.status:9s} {outcome.run.name} "
                     f"({_fmt_time(outcome.seconds)}){_failure_hint(outcome)}")  # fmt: skip
            if active and time.monotonic() - last_report >= progress_every:
                last_report = time.monotonic()
                for index, (_, start, _) in active.items():
                    run = outcomes[index].run
                    echo(f"[sweep] {run.label} running {run.name} "
                         f"({_fmt_time(time.monotonic() - start)}, {_progress(run)})")  # fmt: skip
            time.sleep(0.2)
    except KeyboardInterrupt:
        echo("[sweep] interrupted: stopping the running processes")
        for index, (proc, start, log) in active.items():
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()
            outcomes[index].seconds = time.monotonic() - start
    return [outcomes[run.index] for run in runs]


def _read_result(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _tail(path: Path, size: int = 16384) -> str:
    try:
        with path.open("rb") as f:
            f.seek(max(0, path.stat().st_size - size))
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def _progress(run: PlannedRun) -> str:
    """`epoch 3/30` (or `testing`) from Lightning's progress bar in the run's log."""
    tail = _tail(run.log_path)
    epochs = list(re.finditer(r"Epoch (\d+)", tail))
    testing = tail.rfind("Testing")
    if testing >= 0 and (not epochs or testing > epochs[-1].start()):
        return "testing"
    if not epochs:
        return "starting"
    total = f"/{run.max_epochs}" if run.max_epochs else ""
    return f"epoch {int(epochs[-1].group(1)) + 1}{total}"


def _failure_hint(outcome: RunOutcome) -> str:
    if outcome.returncode in (0, None):
        return ""
    lines = [ln.strip() for ln in re.split(r"[\r\n]+", _tail(outcome.run.log_path)) if ln.strip()]
    last = lines[-1][:160] if lines else ""
    return f": {last}  [log: {outcome.run.log_path}]"


def _fmt_time(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def summary_table(outcomes: list[RunOutcome], metric: str | None, goal: str = "maximize") -> str:
    """One row per run: number, name, status, wall time, the sweep's metric (best marked `*`)."""
    values = {o.run.index: o.result.get(metric) for o in outcomes} if metric else {}
    numeric = {i: float(v) for i, v in values.items() if isinstance(v, int | float)}
    best = (max if goal == "maximize" else min)(numeric, key=numeric.get) if numeric else None
    header = ["#", "run", "status", "time", metric or "metric"]
    rows = [header]
    for o in outcomes:
        value = numeric.get(o.run.index)
        shown = "-" if value is None else f"{value:.4f}" + (" *" if o.run.index == best else "")
        rows.append([o.run.label, o.run.name, o.status, _fmt_time(o.seconds), shown])
    widths = [max(len(r[c]) for r in rows) for c in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)
