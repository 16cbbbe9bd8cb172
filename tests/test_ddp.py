"""DDP on CPU (2 processes, gloo): `trainer=ddp` trains and tests end to end, and the gathered test
metrics equal a single-process evaluation of the same checkpoint."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import hydra
import lightning as L
import pytest

from ae_lab.training import build_module
from tests.compose import compose_config, tiny_overrides
from tests.conftest import write_tiny_mvtec

REPO = Path(__file__).resolve().parents[1]
CATEGORIES = ["widget", "screw"]
DDP = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"]

# Run as its own script: Lightning's `ddp` launcher starts rank 1 by re-running this file.
EVAL_SCRIPT = """
import json, sys
import hydra, lightning as L
from ae_lab.training import build_module
from tests.compose import compose_config

overrides, ckpt, out = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
cfg = compose_config(overrides)
module, dm = build_module(cfg), hydra.utils.instantiate(cfg.data)
trainer = L.Trainer(strategy="ddp", accelerator="cpu", devices=2, logger=False,
                    enable_progress_bar=False, enable_model_summary=False)
trainer.test(module, datamodule=dm, ckpt_path=ckpt, verbose=False)
with open(f"{out}/rank{trainer.global_rank}.json", "w") as f:
    json.dump({"index": module.test_scores.index.tolist(),
               "path": module.test_scores["path"].tolist(),
               "metrics": module.test_metrics}, f)
"""


def _env(tmp: Path) -> dict[str, str]:
    # One thread per process: two processes already share the 2 cores.
    return os.environ | {"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline"}


@pytest.fixture(scope="module")
def odd_mvtec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny tree with 13 test images: an odd count makes DistributedSampler repeat one."""
    root = write_tiny_mvtec(tmp_path_factory.mktemp("odd_mvtec"))
    (root / "screw" / "test" / "good" / "002.png").unlink()
    return root


@pytest.mark.slow
def test_ddp_metrics_equal_single_process_evaluation(odd_mvtec, tmp_path):
    base = [*tiny_overrides(odd_mvtec, tmp_path / "run", CATEGORIES), "data.batch_size=2"]
    train = subprocess.run(
        [sys.executable, "train.py", *DDP, *base, "trainer.limit_train_batches=1.0"],
        cwd=REPO, env=_env(tmp_path), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert train.returncode == 0, train.stderr[-3000:]
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert ckpt.is_file()
    assert "test/image_auroc" in train.stdout  # the DDP run tested and printed its summary

    out = tmp_path / "ddp_eval"
    out.mkdir()
    script = tmp_path / "ddp_eval.py"
    script.write_text(EVAL_SCRIPT)
    proc = subprocess.run(
        [sys.executable, str(script), json.dumps(base), str(ckpt), str(out)],
        cwd=REPO, env=_env(tmp_path), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]

    cfg = compose_config(base)
    module, dm = build_module(cfg), hydra.utils.instantiate(cfg.data)
    trainer = L.Trainer(
        accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
        enable_model_summary=False,
    )  # fmt: skip
    trainer.test(module, datamodule=dm, ckpt_path=str(ckpt), verbose=False)
    single = module.test_scores
    assert len(single) == 13

    for rank in ranks:  # every rank holds the whole test set, each image once, in index order
        assert rank["index"] == single.index.tolist()
        assert rank["path"] == single["path"].tolist()
        assert rank["metrics"].keys() == module.test_metrics.keys()
        for key, value in module.test_metrics.items():
            assert math.isclose(rank["metrics"][key], value, rel_tol=1e-5, abs_tol=1e-6), key
    assert "test/image_auroc" in module.test_metrics
