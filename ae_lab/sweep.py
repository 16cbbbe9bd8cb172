"""Run a W&B grid sweep file as one Hydra multirun of train.py, without a sweep server.

    python -m ae_lab.sweep sweeps/grid.yaml                       # 8 runs, one after the other
    python -m ae_lab.sweep sweeps/grid.yaml --jobs 2              # two at a time, threads split
    python -m ae_lab.sweep sweeps/grid.yaml --dry-run             # print the Hydra command only
    python -m ae_lab.sweep sweeps/grid.yaml trainer.max_epochs=5  # extra overrides for every run

Ctrl-C (or SIGTERM) stops the grid: the runs in flight end as interrupted runs that can resume
(each prints its resume command), no further run starts, and the summary lists what finished.

The same file drives `wandb sweep` + `wandb agent`: its parameter names are Hydra override paths
(W&B's nested `parameters:` blocks become dotted paths), and `hydra_argv` turns the agent's
Python-spelled arguments into Hydra overrides. Hydra itself checks every key and option.
"""

import argparse
import ast
import contextlib
import functools
import json
import math
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf

from ae_lab.config import flatten
from ae_lab.errors import AeLabError

REPO = Path(__file__).resolve().parents[1]  # train.py and conf/
_HYDRA_FLAGS = ("--config-path", "--config-name", "--config-dir", "--package", "--info", "--cfg")
# Signals that stop a grid. SIGHUP too: the multirun has its own session, so a closed terminal
# no longer reaches it directly.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
STOP_GRACE_S = 60.0  # for the runs in flight to stop (next batch, W&B finish) before SIGKILL


def load_sweep(path: str | Path) -> dict[str, Any]:
    """A grid sweep file, its `parameters` flattened to `{hydra path: [values]}`.

    Read with OmegaConf's YAML loader, which reads `1e-3` as a float, as W&B's agent passes it;
    it is a SafeLoader, so YAML tags such as `!!python/object/apply` are refused, never run.
    """
    path = Path(path)
    if not path.is_file():
        raise AeLabError(f"Sweep file not found: {path}. The sweep files live in sweeps/.")
    try:
        sweep = OmegaConf.to_container(OmegaConf.load(path))
    except yaml.constructor.ConstructorError as e:  # a tag: valid YAML, but not plain values
        raise AeLabError(
            f"{path} holds a YAML tag that ae-lab does not read ({' '.join(str(e).split())}). "
            "A sweep file holds plain values (strings, numbers, lists, mappings): remove the tag; "
            "sweeps/grid.yaml shows the expected layout."
        ) from None
    except Exception as e:  # yaml's ScannerError/ParserError name the line and column
        raise AeLabError(
            f"{path} is not valid YAML ({' '.join(str(e).split())}). Fix the line it names; "
            "sweeps/grid.yaml shows the expected layout."
        ) from None
    if not isinstance(sweep, dict):
        raise AeLabError(f"{path} must be a YAML mapping with `method` and `parameters` keys.")
    if sweep.get("method") != "grid":
        raise AeLabError(
            f"{path}: `method: {sweep.get('method')}` is not a grid. random and bayes pick each run "
            f"from the results so far, which needs W&B's sweep server: `wandb sweep {path}`, then "
            "`wandb agent ENTITY/PROJECT/SWEEP_ID`. `python -m ae_lab.sweep` runs `method: grid`."
        )
    sweep["parameters"] = _flat_parameters(path, sweep.get("parameters") or {})
    if not sweep["parameters"]:
        raise AeLabError(f"{path}: `parameters` must map Hydra paths to `value:` or `values:`.")
    return sweep


def _flat_parameters(path: Path, tree: dict[str, Any], prefix: str = "") -> dict[str, list[Any]]:
    flat: dict[str, list[Any]] = {}
    for name, entry in tree.items():
        key = f"{prefix}{name}"
        if isinstance(entry, dict) and entry.get("parameters"):
            flat |= _flat_parameters(path, entry["parameters"], f"{key}.")
            continue
        if not isinstance(entry, dict) or not {"value", "values"} & entry.keys():
            raise AeLabError(
                f"{path}: parameter `{key}` needs `value: x`, `values: [x, y]` or a non-empty nested "
                f"`parameters:` block, got {entry!r}. Distributions (min/max) need `method: "
                "random|bayes` and W&B's sweep server."
            )
        values = [entry["value"]] if "value" in entry else entry["values"]
        if not isinstance(values, list) or len({hydra_value(v) for v in values}) < len(values):
            raise AeLabError(
                f"{path}: `{key}.values` must be a list without repeats (a repeat would run "
                f"the same point twice), got {values!r}."
            )
        flat[key] = values
    return flat


def multirun_argv(sweep: dict, extra: list[str], out: Path, group: str, jobs: int) -> list[str]:
    """`python train.py -m <grid> <extra> ...`: run N writes `out/<N>-<run_name>/result.json`;
    the runs share W&B group `group` (unless `logger.group` is given); `jobs > 1` picks the joblib
    launcher (threads split)."""
    params = dict(sweep["parameters"])
    given = dict(o.lstrip("+~").partition("=")[::2] for o in extra)  # {key: value as typed}
    for key in given:
        if len(params.pop(key, ())) > 1:  # an extra override replaces a `value:`, not a sweep
            raise AeLabError(f"The extra override of `{key}` clashes with the sweep over {key}.")
    argv = [sys.executable, "train.py", "-m", f"hydra.sweep.dir={hydra_value(str(out))}"]
    argv += [f"{k}={','.join(hydra_value(v) for v in vs)}" for k, vs in params.items()] + extra
    argv.append("result_file=${hydra:runtime.output_dir}/result.json")
    # `group` unless the sweep file or an override sets logger.group (`logger=none` has none)
    if "logger.group" not in {*params, *given} and given.get("logger", "wandb") == "wandb":
        argv.append(f"logger.group={hydra_value(group)}")
    if jobs > 1:  # joblib gives each worker cores / jobs threads (OMP_NUM_THREADS)
        argv += ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={jobs}"]
    return argv


def summary(sweep_dir: Path, n_runs: int, metric: dict[str, str]) -> tuple[str, int]:
    """One line per run that wrote its result.json (folder, status, the sweep's metric, the best
    marked `*`; W&B's default goal is minimize), and how many of the `n_runs` did not end ok."""
    name = metric.get("name", "test/image_auroc")
    files = sorted(sweep_dir.glob("*/result.json"), key=lambda p: int(p.parent.name.split("-")[0]))
    results = {p.parent.name: json.loads(p.read_text()) for p in files}
    values = [r[name] for r in results.values() if isinstance(r.get(name), int | float)]
    best = (max if metric.get("goal") == "maximize" else min)(values, default=None)
    lines = [f"{'run':32s} {'status':11s} {name}"]
    for run, r in results.items():
        value = r.get(name)
        shown = f"{value:.4f}" + (" *" if value == best else "") if value in values else "-"
        lines.append(f"{run:32s} {r.get('status'):11s} {shown}")
    offline = [r["wandb_dir"] for r in results.values() if r.get("wandb_mode") == "offline"]
    if offline:
        lines.append(f"\n[sweep] offline W&B runs; to upload: wandb sync {shlex.join(offline)}")
    return "\n".join(lines), n_runs - sum(r.get("status") == "ok" for r in results.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        "python -m ae_lab.sweep",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("sweep", type=Path, help="sweep file, e.g. sweeps/grid.yaml")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run")
    parser.add_argument("--dry-run", action="store_true", help="print the command, run nothing")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (default 1)")
    parser.add_argument("--group", help="W&B group of all runs (default <sweep name>-<time>)")
    parser.add_argument("--out-dir", type=Path, help="default: $AE_LAB_OUTPUTS/sweeps")
    args = parser.parse_intermixed_args(argv)  # overrides before or after the options
    try:
        sweep = load_sweep(args.sweep)
        name = sweep.get("name") or args.sweep.stem
        group = args.group or f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
        out_dir = args.out_dir or Path(os.environ.get("AE_LAB_OUTPUTS", "outputs")) / "sweeps"
        sweep_dir = (REPO / out_dir / re.sub(r"[^\w.=+-]+", "_", group)).resolve()
        cmd = multirun_argv(sweep, args.overrides, sweep_dir, group, args.jobs)
        if sweep_dir.exists():  # the summary reads the run folders: each sweep has its own
            raise FileExistsError(sweep_dir)
        if not args.dry_run:  # claimed now, not when Hydra creates it seconds later
            sweep_dir.mkdir(parents=True)
    except AeLabError as err:
        parser.exit(2, f"\n[ae-lab] error: {err}\n")
    except FileExistsError:  # a second sweep with this folder is refused
        why = "another sweep with this --group is running or has run there"
        if args.group is None:
            why = "a sweep of the same name started in the same second"
        parser.exit(
            2,
            f"\n[ae-lab] error: The sweep folder {sweep_dir} of group `{group}` exists already "
            f"({why}); the summary reads the run folders there, so each sweep needs its own. "
            "Give this sweep another --group (or another --out-dir).\n",
        )
    n_runs = math.prod(map(len, sweep["parameters"].values()))
    if args.dry_run:
        print(shlex.join(cmd))
        return 0
    print(f"[sweep] {n_runs} runs, {args.jobs} at a time, group {group}: {sweep_dir}", flush=True)
    env = os.environ | {"PYTHONUNBUFFERED": "1"}  # live output through a pipe (the notebook)
    code, stopped_by = run_grid(cmd, env)
    table, failed = summary(sweep_dir, n_runs, sweep.get("metric") or {})
    if stopped_by is None:
        print(f"\n{table}\n\n[sweep] {failed} of {n_runs} runs failed" if failed else f"\n{table}")
        return 1 if failed or code else 0
    # Hydra creates a run's folder when the run starts; result.json is written when it ends, with
    # status "interrupted" for a stopped run (none when it was stopped outside Lightning).
    started = [p for p in sweep_dir.iterdir() if re.match(r"\d+-", p.name) and p.is_dir()]
    status = [_status(p / "result.json") for p in started]
    interrupted = sum(s in (None, "interrupted") for s in status)
    ended_failed = len(started) - interrupted - status.count("ok")
    print(
        f"\n{table}\n\n[sweep] grid stopped by {signal.Signals(stopped_by).name}: "
        f"{len(started) - interrupted} of {n_runs} runs ended"
        + (f" ({ended_failed} failed)" if ended_failed else "")
        + f", {interrupted} interrupted"
        + (" (each printed its command to go on)" if interrupted else "")
        + f", {n_runs - len(started)} did not run.",
        flush=True,
    )
    return 128 + stopped_by  # the shell's code for death by that signal: 130, 143, 129


def _status(result_file: Path) -> str | None:
    try:
        return json.loads(result_file.read_text()).get("status")
    except (OSError, ValueError):  # not written (or cut short by SIGKILL)
        return None


def run_grid(
    cmd: list[str], env: Mapping[str, str], grace: float = STOP_GRACE_S
) -> tuple[int, int | None]:
    """Run the multirun `cmd` in its own process group until it ends or a stop signal arrives.

    SIGINT, SIGTERM or SIGHUP to this process sends one SIGINT to the whole group: Lightning ends
    the runs in flight as interrupted runs (train.py prints the resume command, exits 130) and
    Hydra's launcher starts no next run. What is left of the group after `grace` seconds, or at a
    second signal, is killed. Returns the multirun's exit code and the first stop signal (None
    when it ended by itself).
    """
    received: list[int] = []
    group: list[int] = []  # the child's process group, once it exists

    def stop(signum: int, _frame: Any) -> None:  # no printing here: it may interrupt a print
        received.append(signum)
        if group:
            _signal_group(group[0], signal.SIGINT if len(received) == 1 else signal.SIGKILL)

    previous = {s: signal.signal(s, stop) for s in STOP_SIGNALS}  # before the child: no gap
    try:
        # Its own session: Ctrl-C reaches the group once, through us, never a second time from
        # the terminal (a second SIGINT would cut Lightning's graceful stop short).
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, start_new_session=True)
        group.append(proc.pid)
        if received:  # a signal that came before the group existed
            _signal_group(proc.pid, signal.SIGINT)
        deadline = None
        while True:
            code = proc.poll()
            if received and deadline is None:
                deadline = time.monotonic() + grace
                name = signal.Signals(received[0]).name
                print(
                    f"\n[sweep] {name}: stopping the runs in flight.", file=sys.stderr, flush=True
                )
            # After a stop, wait for the whole group: joblib's workers may outlive Hydra's process.
            if code is not None and not (received and _group_alive(proc.pid)):
                break
            if deadline is not None and time.monotonic() > deadline:
                _signal_group(proc.pid, signal.SIGKILL)
                print(f"[sweep] the runs did not stop in {grace:g} s: killed.", file=sys.stderr)
                code = proc.wait()
                break
            time.sleep(0.2)
        return code, (received[0] if received else None)
    except BaseException:  # our own crash must not leave the grid running unattended
        if group:
            _signal_group(group[0], signal.SIGKILL)
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # the group has ended
        os.killpg(pgid, sig)


def _group_alive(pgid: int) -> bool:
    """Whether a process of group `pgid` is left (orphaned workers are reaped by init)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


# ---- the W&B agent's command line ----------------------------------------------------------
def hydra_argv(argv: list[str], environ: Mapping[str, str]) -> list[str]:
    """train.py's command line for Hydra: as typed, unless `wandb agent` started the process
    (WANDB_SWEEP_ID). The agent passes `key=value` (`--key=value` with `${args}`) in Python's
    spelling: `['cable', 'screw']`, `None`, `{'depth': 3}` (nested parameters), `a b`. Those
    become Hydra overrides; the agent's `_wandb` arguments are dropped."""
    if not environ.get("WANDB_SWEEP_ID"):
        return list(argv)
    out = argv[:1]
    for arg in [a for a in argv[1:] if a.lstrip("-").partition("=")[0] != "_wandb"]:
        key, sep, text = arg.partition("=")
        if not sep or key in _HYDRA_FLAGS:  # `-m`, `--cfg job`, `--config-name=x`
            out.append(arg)
            continue
        key = key.removeprefix("--")  # `${args}` passes `--key=value`
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            value = text  # words, paths, interpolations, Hydra's own `[a,b]`
        if isinstance(value, list | dict) or value is None:  # a dict: one override per leaf
            out += [f"{k}={hydra_value(v)}" for k, v in flatten({key: value}).items()]
        else:  # numbers, booleans and most strings already parse; `a,b` would be a sweep
            out.append(f"{key}={text if _hydra_reads(text) is not None else _quote(text)}")
    return out


def hydra_value(value: Any) -> str:
    """A YAML/Python value as the right-hand side of a Hydra override: `["cable", "screw"]` ->
    `[cable,screw]`, `None` -> `null`; strings Hydra reads otherwise (`"1"`, `"a,b"`) are quoted."""
    if isinstance(value, list | tuple):
        return "[" + ",".join(hydra_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{hydra_value(v)}" for k, v in value.items()) + "}"
    if not isinstance(value, str):  # null, true, 2.5e-05, inf
        return json.dumps(value) if value is None or isinstance(value, bool) else repr(value)
    override = _hydra_reads(value)
    return value if override is not None and override.value() == value else _quote(value)


@functools.cache
def _hydra_reads(text: str) -> Any:
    """Hydra's parse of `x=<text>` (None when it is invalid or a sweep)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        override = OverridesParser.create().parse_overrides([f"x={text}"])[0]
    except Exception:  # Hydra's OverrideParseException and ANTLR errors
        return None
    return None if override.is_sweep_override() else override


def _quote(text: str) -> str:
    # Hydra unescapes backslashes only before a quote or at the end of a quoted string.
    text = re.sub(r"(\\*)'", lambda m: m.group(1) * 2 + "\\'", text)
    return "'" + re.sub(r"(\\+)$", lambda m: m.group(1) * 2, text) + "'"


if __name__ == "__main__":
    sys.exit(main())
