"""Compare the W&B runs of a project: loss curves, per-defect score histograms, AUROC tables, ranking.

  python analyze.py --project tarea05 --group grid            # W&B API, or offline without login
  python analyze.py --project tarea05 --offline-dir ./wandb   # offline run folders

sources:
  online   with W&B credentials (wandb login / WANDB_API_KEY) and no --offline-dir, the runs are
           read with wandb.Api(): config, summary, history and the test/scores table file.
  offline  with --offline-dir, WANDB_MODE=offline or no credentials, the run folders under
           --offline-dir (default $WANDB_DIR/wandb or ./wandb) are read with `wandb leet inspect`.
Runs that crashed, are unfinished, damaged or lack the test/scores table are skipped with a warning.
"""

import argparse
import logging
import shlex
import sys

from ae_lab.analysis.report import run_analysis
from ae_lab.errors import AeLabError, error_line


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--project", required=True, help="W&B project of the training runs")
    parser.add_argument("--entity", help="W&B entity (online only; default: your default entity)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--group", help="only runs of this group (logger.group, e.g. a grid)")
    which.add_argument("--sweep", help="only runs of this W&B sweep id")
    parser.add_argument(
        "--offline-dir",
        help="read offline run folders here: the `wandb/` folder or the folder holding it",
    )
    parser.add_argument("--out", help="report folder (default: reports/<project>/)")
    parser.add_argument(
        "--report", action="store_true", help="also save a W&B Report (needs W&B online)"
    )
    parser.add_argument(
        "--no-wandb", action="store_true", help="do not log the analysis as a W&B run"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(format="[ae-lab] warning: %(message)s", level=logging.WARNING)
    try:
        result = run_analysis(
            args.project,
            entity=args.entity,
            group=args.group,
            sweep=args.sweep,
            offline_dir=args.offline_dir,
            out_dir=args.out,
            report=args.report,
            log_to_wandb=not args.no_wandb,
        )
    except AeLabError as err:
        error_line(str(err))
        return 2
    lines = ["", f"[ae-lab] analysed {len(result.data.runs)} runs from {result.data.source}"]
    lines += [f"  report           {result.index_html.resolve()}"]
    if result.logged and result.logged.run_dir:
        lines += [f"  W&B run folder   {result.logged.run_dir} ({result.logged.mode})"]
        if result.logged.mode == "offline":
            lines += [f"  upload later     wandb sync {shlex.quote(str(result.logged.run_dir))}"]
    if result.logged and result.logged.url:
        lines += [f"  W&B run page     {result.logged.url}"]
    if result.report_url:
        lines += [f"  W&B Report       {result.report_url}"]
    lines += [f"  - {line}" for line in result.analysis.ranking]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
