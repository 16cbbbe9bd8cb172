"""Run a W&B grid sweep file as one Hydra multirun, without a sweep server.

    python -m ae_lab.sweep sweeps/grid.yaml                       # 8 runs, one after the other
    python -m ae_lab.sweep sweeps/grid.yaml --jobs 2              # two at a time, threads split
    python -m ae_lab.sweep sweeps/grid.yaml --dry-run             # print the Hydra command only
    python -m ae_lab.sweep sweeps/grid.yaml trainer.max_epochs=5  # extra overrides for every run

All runs share one W&B group (`--group`, default `<sweep name>-<timestamp>`); the exit status is
non-zero when any run failed.
"""

from __future__ import annotations

import argparse
import functools
import os
import re
import shlex
import sys
import time
from pathlib import Path

from ae_lab.errors import AeLabError
from ae_lab.sweep.expand import apply_extra, expand
from ae_lab.sweep.multirun import (
    RunOutcome,
    multirun_command,
    prepare_data,
    run_multirun,
    run_names,
    summary_table,
)
from ae_lab.sweep.spec import find_repo_root, load_sweep


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ae_lab.sweep",
        description="Run every point of a W&B grid sweep file as one Hydra multirun of train.py.",
    )
    parser.add_argument("sweep", type=Path, help="sweep file, e.g. sweeps/grid.yaml")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run")
    parser.add_argument("--dry-run", action="store_true", help="print the command, run nothing")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (default 1)")
    parser.add_argument("--group", help="W&B group of all runs (default <sweep name>-<time>)")
    parser.add_argument(
        "--out-dir",
        type=Path,
        help="parent of the sweep folder (default $AE_LAB_OUTPUTS or outputs, /sweeps)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_intermixed_args(argv)  # overrides before or after the options
    try:
        return _main(args)
    except AeLabError as err:
        print(f"\n[ae-lab] error: {err}\n", file=sys.stderr)
        return 2


def _main(args: argparse.Namespace) -> int:
    if args.jobs < 1:
        raise AeLabError(f"--jobs must be at least 1, got {args.jobs}.")
    spec = load_sweep(args.sweep)
    root = find_repo_root(spec.path)
    if not (root / spec.program).is_file():
        raise AeLabError(f"{spec.path}: program {spec.program} is not in {root}.")
    points = expand(spec, root / "conf", args.overrides)  # every point composes, or nothing runs
    out_dir = args.out_dir or Path(os.environ.get("AE_LAB_OUTPUTS", "outputs")) / "sweeps"
    group, sweep_dir = _sweep_folder((root / out_dir).resolve(), spec.name, args.group)
    spec = apply_extra(spec, args.overrides)
    argv = multirun_command(spec, points, args.overrides, sweep_dir, group, args.jobs)
    names = run_names(points)
    if args.dry_run:
        print(f"# {len(points)} runs of {spec.path}, from {root}:", file=sys.stderr)
        print(f"#   {sweep_dir}/{{{','.join(names)}}}", file=sys.stderr)
        print(shlex.join(argv))
        return 0

    print(
        f"[sweep] {spec.name}: {len(points)} runs, {args.jobs} at a time, W&B group {group!r}\n"
        f"[sweep] run folders: {sweep_dir}   output: {sweep_dir / 'multirun.log'}",
        flush=True,
    )
    echo = functools.partial(print, flush=True)
    prepare_data(points, root, echo)
    outcomes = [
        RunOutcome(p.index, len(points), name) for p, name in zip(points, names, strict=True)
    ]
    code = run_multirun(argv, root, outcomes, sweep_dir, echo)
    metric = spec.metric or {}
    print("\n" + summary_table(outcomes, metric.get("name"), metric.get("goal", "maximize")))
    print(f"\n[sweep] W&B group: {group}   run folders: {sweep_dir}")
    offline = [o.result["wandb_dir"] for o in outcomes if o.result.get("wandb_mode") == "offline"]
    if offline:
        print(
            f"[sweep] the W&B runs are offline; upload them with: wandb sync {shlex.join(offline)}"
        )
    if code > 128:  # Ctrl-C (130) or SIGTERM (143)
        return code
    failed = [o for o in outcomes if o.status != "ok"]
    if failed:
        print(
            f"[sweep] {len(failed)} of {len(outcomes)} runs failed; see above and {sweep_dir / 'multirun.log'}."
        )
    elif code != 0:
        print(f"[sweep] the multirun exited with {code}; see {sweep_dir / 'multirun.log'}.")
    return 1 if failed or code else 0


def _sweep_folder(out_dir: Path, name: str, group: str | None) -> tuple[str, Path]:
    """The W&B group (`group`, else `<name>-<time>`) and a sweep folder `out_dir/<group>[-k]` that
    does not exist yet: the runner tells runs apart by their folders, so sweeps never share one."""
    group = group or f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    base = out_dir / re.sub(r"[^\w.=+-]+", "_", group)
    folder, k = base, 1
    while folder.exists():
        k += 1
        folder = base.with_name(f"{base.name}-{k}")
    return group, folder


if __name__ == "__main__":
    sys.exit(main())
