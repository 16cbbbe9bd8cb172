"""DDP on CPU (2 processes, gloo): `trainer=ddp` trains on both processes and scores every test
image exactly once (on rank zero, on one device), as a single-process run does."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from lightning.pytorch.callbacks import Callback

from ae_lab.data.table import scan_mvtec
from tests.compose import tiny_overrides

REPO = Path(__file__).resolve().parents[1]
DDP = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"]
CATEGORIES = ["widget", "screw"]


class ScoredPaths(Callback):
    """Appends the path of every image a test step scored, in this process, to
    `<folder>/<pid>.txt`: the files of all processes together list each scoring once."""

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dl_idx=0):
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / f"{os.getpid()}.txt", "a") as f:
            f.writelines(f"{path}\n" for path in outputs.scores["path"])


@pytest.mark.slow
def test_ddp_trains_on_two_processes_and_scores_every_test_image_once(tiny_mvtec, tmp_path):
    result_file, scored = tmp_path / "result.json", tmp_path / "scored"
    base = tiny_overrides(tiny_mvtec, tmp_path / "run", CATEGORIES)
    counter = [
        f"+callbacks.scored._target_={__name__}.ScoredPaths",
        f"+callbacks.scored.folder={scored}",
    ]
    # One thread per process: two processes already share the 2 cores.
    env = os.environ | {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline"}
    command = [sys.executable, "train.py", *DDP, *base, *counter, f"result_file={result_file}"]
    proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()
    assert proc.stdout.count("[ae-lab] done.") == 1  # one summary, from rank zero
    result = json.loads(result_file.read_text())
    assert result["status"] == "ok" and 0.0 <= result["test/image_auroc"] <= 1.0
    table = scan_mvtec(tiny_mvtec, CATEGORIES)
    expected = sorted(table.loc[table["split"] == "test", "path"])
    files = list(scored.glob("*.txt"))
    paths = sorted(line for f in files for line in f.read_text().splitlines())
    assert len(files) == 1 and paths == expected  # one process, each image once
    # Per-class AUROCs over the whole test set: every class is in the metrics.
    assert all(f"test/image_auroc/{c}" in result for c in CATEGORIES)
