"""Run a W&B grid sweep file offline, without a sweep server.

    python -m ae_lab.sweep sweeps/grid.yaml                       # 8 runs, one after the other
    python -m ae_lab.sweep sweeps/grid.yaml --jobs 2              # two at a time, threads split
    python -m ae_lab.sweep sweeps/grid.yaml --dry-run             # print the commands only
    python -m ae_lab.sweep sweeps/grid.yaml trainer.max_epochs=5  # extra overrides for every run

All runs share one W&B group (`--group`, default `<sweep name>-<timestamp>`); the exit status is
non-zero when any run failed.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import sys
import time
from pathlib import Path

from ae_lab.errors import AeLabError
from ae_lab.sweep.expand import expand
from ae_lab.sweep.runner import plan_runs, prepare_data, run_all, summary_table
from ae_lab.sweep.spec import find_repo_root, load_sweep


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ae_lab.sweep",
        description="Run every point of a W&B grid sweep file as its own train.py process.",
    )
    parser.add_argument("sweep", type=Path, help="sweep file, e.g. sweeps/grid.yaml")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every run")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (default 1)")
    parser.add_argument("--group", help="W&B group of all runs (default <sweep name>-<time>)")
    parser.add_argument(
        "--out-dir",
        type=Path,
        help="folder for the logs and run folders (default $AE_LAB_OUTPUTS or outputs, /sweeps/<group>)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
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
    points = expand(spec, root / "conf", args.overrides)
    group = args.group or f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    out_dir = args.out_dir or Path(os.environ.get("AE_LAB_OUTPUTS", "outputs")) / "sweeps"
    out_dir = (root / out_dir).resolve() / re.sub(r"[^\w.=+-]+", "_", group)
    runs = plan_runs(points, out_dir, group, args.jobs)
    if args.dry_run:
        print(f"# {len(runs)} runs of {spec.path}; run them from {root}", file=sys.stderr)
        for run in runs:
            print(run.shell())
        return 0

    print(
        f"[sweep] {spec.name}: {len(runs)} runs, {args.jobs} at a time, W&B group {group!r}\n"
        f"[sweep] logs: {out_dir}",
        flush=True,
    )
    prepare_data(points, root, echo=lambda line: print(line, flush=True))
    outcomes = run_all(runs, root, args.jobs, echo=lambda line: print(line, flush=True))
    metric = (spec.metric or {}).get("name")
    print("\n" + summary_table(outcomes, metric, (spec.metric or {}).get("goal", "maximize")))
    print(f"\n[sweep] W&B group: {group}   logs and run folders: {out_dir}")
    offline = [o.result["wandb_dir"] for o in outcomes if o.result.get("wandb_mode") == "offline"]
    if offline:
        print(
            f"[sweep] the W&B runs are offline; upload them with: wandb sync {shlex.join(offline)}"
        )
    if any(o.status.startswith("interrupted") for o in outcomes):
        return 130
    failed = [o for o in outcomes if o.status != "ok"]
    if failed:
        print(f"[sweep] {len(failed)} of {len(outcomes)} runs failed; see their logs above.")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
