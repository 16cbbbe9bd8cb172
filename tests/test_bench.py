"""Every benchmark runs at its tiny `--quick` size and prints its table (behaviour, not timings)."""

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# First-column entries each script's table must contain (prefixes).
EXPECTED = {
    "data_path": [
        "model only",
        "project MVTecDataModule, workers=0",
        "project MVTecDataModule, workers=2",
        "naive Pillow per item, workers=0",
        "naive Pillow per item, workers=2",
    ],
    "cache": ["first run: decode", "same process", "new process", "naive loader"],
    "evaluation": ["one training epoch", "test 12 images: maps", "test 12 images with all W&B"],
    "losses": ["loss L1", "loss L2", "loss SSIM 11x11", "loss SSIM 11x11 + L1", "map l2, no"],
    "knobs": ["project default", "channels-last", "bf16 autocast", "torch threads 1"],
}
# Not here, for time (each trains several processes, ~1 min at --quick on 2 cores): bench/grid.py
# (the grid itself is tested in test_sweeps.py) and bench/memory.py; `make bench` runs them.
# bench/peers.py needs anomalib in its own venv (pyproject's `peers` extra), never installed by CI;
# its fail-fast check is tested below.


def table_rows(stdout: str) -> dict[str, list[str]]:
    """First cell -> the other cells, for every data row of the Markdown tables printed."""
    rows = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and not set(line) <= set("|-") and len(cells) > 1:
            rows[cells[0]] = cells[1:]
    return rows


@pytest.mark.slow
@pytest.mark.parametrize("name", list(EXPECTED))
def test_bench_quick_prints_its_table(name, tmp_path):
    # One round: the table, not its spread, is what is tested.
    args = ["--quick", "--rounds", "1", *(["--skip-compile"] if name == "knobs" else [])]
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", "TMPDIR": str(tmp_path)}
    command = [sys.executable, f"bench/{name}.py", *args]
    proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = table_rows(proc.stdout)
    for prefix in EXPECTED[name]:
        match = [cells for first, cells in rows.items() if first.startswith(prefix)]
        assert match, f"{name}: no row {prefix!r} in\n{proc.stdout}"
        numbers = [float(c) for c in match[0] if c not in ("-", "")]
        assert numbers and all(math.isfinite(v) and v >= 0 for v in numbers), match[0]
    if name == "data_path":  # the ceiling is its own reference
        assert rows["model only (tensors in memory)"][1] == "1"


def test_run_rejects_unknown_benchmark():
    proc = subprocess.run(
        [sys.executable, "bench/run.py", "--only", "nope"], cwd=REPO, capture_output=True, text=True
    )
    assert proc.returncode == 2 and "invalid choice" in proc.stderr


def test_peers_without_anomalib_stops_before_training(tmp_path):
    """bench/peers.py checks the peers' interpreter first: no ae-lab row trains for minutes to
    then find anomalib missing."""
    argv = ["bench/peers.py", "--root", str(tmp_path), "--category", "screw"]
    command = [sys.executable, *argv, "--peer-python", str(tmp_path / "none")]
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "no anomalib interpreter" in proc.stderr
    assert 'pip install "anomalib==2.7.0"' in proc.stderr and "Traceback" not in proc.stderr
