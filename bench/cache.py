"""Decode cache: the first-epoch cost (decode + resize + write) against a warm start.

python bench/cache.py [--quick] [--rounds 3]
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common

# A new process that builds the datamodule and takes its first training batch, timing itself.
_WARM_START = """
import sys, time
t = time.perf_counter()
sys.path.insert(0, {bench!r})
import common
import ae_lab.data.datamodule
t_import = time.perf_counter()
dm = common.datamodule(common.size({quick}), cache_dir={cache!r})
dm.prepare_data()
dm.setup()
next(iter(dm.train_dataloader()))
print(t_import - t, time.perf_counter() - t_import)
"""


def cold_build(s: common.Size) -> float:
    """Seconds to decode, resize and write the train and test caches into an empty folder."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-cache-"))
    try:
        dm = common.datamodule(s, cache_dir=tmp)
        dm.table()  # scanned before timing: the scan is not the cache's cost
        start = time.perf_counter()
        dm.prepare_data()  # decodes and writes the train and test caches
        return time.perf_counter() - start
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def warm_in_process(s: common.Size, cache: Path) -> float:
    """Seconds to load both cached splits again (a later epoch never does even this)."""
    dm = common.datamodule(s, cache_dir=cache)
    dm.table()
    start = time.perf_counter()
    dm.prepare_data()  # loads both caches
    return time.perf_counter() - start


def warm_new_process(quick: bool, cache: Path) -> tuple[float, float, float]:
    """(wall, imports, datamodule to first batch) seconds of a fresh Python process."""
    code = _WARM_START.format(bench=str(common.BENCH_DIR), quick=quick, cache=str(cache))
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=common.REPO
    )
    wall = time.perf_counter() - start
    imports, ready = map(float, out.stdout.split()[-2:])
    return wall, imports, ready


def naive_epoch(s: common.Size) -> float:
    """Seconds of one epoch of the naive loader's work: decode + resize every train image."""
    from data_path import NaivePNGDataset

    table = common.datamodule(s).table()
    ds = NaivePNGDataset(table[table["split"] != "test"], s.image_size)
    start = time.perf_counter()
    for i in range(len(ds)):
        ds[i]
    return time.perf_counter() - start


def run(quick: bool, rounds: int) -> str:
    s = common.size(quick)
    cache = common.CACHE / "decode"
    dm = common.datamodule(s, cache_dir=cache)
    dm.prepare_data()  # the warm variants need a cache
    n_train = int((dm.table()["split"] != "test").sum())
    n_all = len(dm.table())
    sub: list[tuple[float, float, float]] = []

    def new_process() -> float:
        sub.append(warm_new_process(quick, cache))
        return sub[-1][0]

    times = common.interleaved(
        {
            "cold": lambda: cold_build(s),
            "warm": lambda: warm_in_process(s, cache),
            "new": new_process,
            "naive": lambda: naive_epoch(s),
        },
        rounds,
    )
    med = {k: common.median(v) for k, v in times.items()}
    imports = common.median([x[1] for x in sub])
    ready = common.median([x[2] for x in sub])
    size_mb = sum(f.stat().st_size for f in cache.rglob("output.pkl")) / 2**20  # joblib's files
    rows = [
        [
            f"first run: decode + resize + write {n_all} images (train+test)",
            med["cold"],
            n_all / med["cold"],
        ],
        ["same process, load both caches again", med["warm"], n_all / med["warm"]],
        ["new process: whole wall time (interpreter, imports, data, first batch)", med["new"], "-"],
        ["  of which imports (torch, lightning, the datamodule)", imports, "-"],
        ["  of which datamodule from cache to first batch", ready, "-"],
        [
            f"naive loader: decode + resize the {n_train} train images (every epoch)",
            med["naive"],
            n_train / med["naive"],
        ],
    ]
    head = (
        f"Decode cache: {n_all} images, {s.source_px} px PNGs -> {s.image_size} px, cache files "
        f"{size_mb:.1f} MiB on disk; median of {rounds} interleaved rounds; decoding uses "
        f"{min(16, os.cpu_count() or 1)} threads; load average {os.getloadavg()[0]:.1f}"
    )
    return head + "\n\n" + common.table(["step", "seconds", "images/s"], rows)


def main(argv: list[str] | None = None) -> str:
    return common.simple_main(__doc__, run, argv, quick=2, full=3)


if __name__ == "__main__":
    main()
