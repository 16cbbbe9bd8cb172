"""Run the benchmarks, each in its own process, and print their tables (Markdown).

python bench/run.py                      # all, default size (tens of minutes on 2 busy cores)
python bench/run.py --quick              # all, tiny size (the smoke test)
python bench/run.py --only data_path     # one (repeat --only for several)
python bench/run.py --only grid -- --rounds 3   # arguments after -- go to each script
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
BENCHES = ("data_path", "cache", "evaluation", "losses", "knobs", "grid", "memory")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1 :]
    parser = argparse.ArgumentParser(
        description="Run the ae-lab benchmarks and print their tables."
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--only", action="append", choices=BENCHES, help="run only this benchmark")
    args = parser.parse_args(argv)
    names = args.only or list(BENCHES)
    env = os.environ | {"PYTHONWARNINGS": "ignore", "PYTHONPATH": str(BENCH_DIR.parent)}
    failed = []
    for name in names:
        cmd = [
            sys.executable,
            str(BENCH_DIR / f"{name}.py"),
            *(["--quick"] if args.quick else []),
            *extra,
        ]
        shown = " ".join(["python", f"bench/{name}.py", *cmd[3:]])
        print(f"\n## {name}\n\n`{shown}`\n", flush=True)
        start = time.perf_counter()
        proc = subprocess.run(cmd, env=env, cwd=BENCH_DIR.parent, stdout=subprocess.PIPE, text=True)
        print(proc.stdout.strip(), flush=True)
        print(
            f"\n({name}: {time.perf_counter() - start:.0f} s, exit {proc.returncode})", flush=True
        )
        if proc.returncode != 0:
            failed.append(name)
    if failed:
        print(f"\n[bench] failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
