"""DDP on CPU (2 processes, gloo): `trainer=ddp` trains on both and tests on rank zero alone."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.compose import tiny_overrides

REPO = Path(__file__).resolve().parents[1]
DDP = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"]


@pytest.mark.slow
def test_ddp_trains_on_two_processes_and_tests_every_image_once(tiny_mvtec, tmp_path):
    result_file = tmp_path / "result.json"
    base = tiny_overrides(tiny_mvtec, tmp_path / "run", ["widget", "screw"])
    # One thread per process: two processes already share the 2 cores.
    env = os.environ | {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline"}
    proc = subprocess.run(
        [sys.executable, "train.py", *DDP, *base, f"result_file={result_file}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
    assert proc.stdout.count("[ae-lab] done.") == 1  # one summary, from rank zero
    result = json.loads(result_file.read_text())
    assert result["status"] == "ok" and 0.0 <= result["test/image_auroc"] <= 1.0
