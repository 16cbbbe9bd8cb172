"""Run a W&B grid sweep file as one Hydra multirun of train.py, without a sweep server.

    python -m ae_lab.sweep sweeps/grid.yaml                       # 8 runs, one after the other
    python -m ae_lab.sweep sweeps/grid.yaml --jobs 2              # two at a time, threads split
    python -m ae_lab.sweep sweeps/grid.yaml --dry-run             # print the Hydra command only
    python -m ae_lab.sweep sweeps/grid.yaml trainer.max_epochs=5  # extra overrides for every run

The same file drives `wandb sweep` + `wandb agent`: its parameter names are Hydra override paths
(W&B's nested `parameters:` blocks become dotted paths), and `hydra_argv` turns the agent's
Python-spelled arguments into Hydra overrides. Hydra itself checks every key and option.
"""

import argparse
import ast
import functools
import json
import math
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from ae_lab.errors import AeLabError, flatten

REPO = Path(__file__).resolve().parents[1]  # train.py and conf/
_HYDRA_FLAGS = ("--config-path", "--config-name", "--config-dir", "--package", "--info", "--cfg")


def load_sweep(path: str | Path) -> dict[str, Any]:
    """A grid sweep file, its `parameters` flattened to `{hydra path: [values]}`.

    Read with OmegaConf's YAML loader, which reads `1e-3` as a float, as W&B's agent passes it.
    """
    path = Path(path)
    if not path.is_file():
        raise AeLabError(f"Sweep file not found: {path}. The sweep files live in sweeps/.")
    try:
        sweep = OmegaConf.to_container(OmegaConf.load(path))
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
    lines = [f"{'run':32s} {'status':9s} {name}"]
    for run, r in results.items():
        value = r.get(name)
        shown = f"{value:.4f}" + (" *" if value == best else "") if value in values else "-"
        lines.append(f"{run:32s} {r.get('status'):9s} {shown}")
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
        if sweep_dir.exists():  # the summary reads the run folders: each sweep has its own
            raise AeLabError(f"{sweep_dir} exists already: give this sweep another --group.")
        cmd = multirun_argv(sweep, args.overrides, sweep_dir, group, args.jobs)
    except AeLabError as err:
        parser.exit(2, f"\n[ae-lab] error: {err}\n")
    n_runs = math.prod(map(len, sweep["parameters"].values()))
    if args.dry_run:
        print(shlex.join(cmd))
        return 0
    print(f"[sweep] {n_runs} runs, {args.jobs} at a time, group {group}: {sweep_dir}", flush=True)
    try:
        env = os.environ | {"PYTHONUNBUFFERED": "1"}  # live output through a pipe (the notebook)
        code = subprocess.run(cmd, cwd=REPO, env=env).returncode
    except KeyboardInterrupt:
        return 130
    table, failed = summary(sweep_dir, n_runs, sweep.get("metric") or {})
    print(f"\n{table}\n\n[sweep] {failed} of {n_runs} runs failed" if failed else f"\n{table}")
    return 1 if failed or code else 0


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
