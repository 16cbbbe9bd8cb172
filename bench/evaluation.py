"""Evaluation: test-set scoring (anomaly maps, AUROC/AUPRO per class and defect) with and without
the W&B media (offline), against one training epoch; t-SNE time on the validation latents.

    python bench/evaluation.py [--quick] [--rounds 2]
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import common
import lightning as L
import pandas as pd
import torch
from torch.optim import AdamW

from ae_lab.callbacks import WandbMediaCallback, tsne_2d
from ae_lab.losses import L2Loss
from ae_lab.metrics import image_metrics, pixel_metrics
from ae_lab.module import AutoencoderModule


class Capture(L.Callback):
    """The test step's outputs (score tables and anomaly maps), for timing the metrics alone."""

    def __init__(self) -> None:
        self.scores, self.maps = [], []

    def on_test_batch_end(self, trainer, module, outputs, batch, batch_idx, dataloader_idx=0):
        self.scores.append(outputs.scores)
        self.maps.append(outputs.anomaly_map.cpu())


def trainer(**kwargs) -> L.Trainer:
    return L.Trainer(
        accelerator="cpu",
        devices=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        num_sanity_val_steps=0,
        **kwargs,
    )


def run(quick: bool, rounds: int) -> str:
    from functools import partial

    from lightning.pytorch.loggers import WandbLogger

    s = common.size(quick)
    tmp = Path(tempfile.mkdtemp(prefix="bench-eval-"))
    os.environ.update({"WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_DIR": str(tmp)})
    dm = common.datamodule(s)
    dm.prepare_data()
    dm.setup()
    torch.manual_seed(0)
    module = AutoencoderModule(common.conv_ae(s), L2Loss(), partial(AdamW, lr=1e-3))
    n_fit = len(dm.dataset("train")) + len(dm.dataset("val"))
    n_test = len(dm.dataset("test"))
    capture = Capture()
    wandb_setup: list[float] = []

    def epoch() -> float:
        t = trainer(max_epochs=1, logger=False)
        start = time.perf_counter()
        t.fit(module, datamodule=dm)
        return time.perf_counter() - start

    def test_plain() -> float:
        t = trainer(logger=False, callbacks=[capture])
        capture.__init__()
        start = time.perf_counter()
        t.test(module, datamodule=dm, verbose=False)
        return time.perf_counter() - start

    def test_media() -> float:
        import wandb

        start = time.perf_counter()
        logger = WandbLogger(project="ae-lab-bench", save_dir=str(tmp))
        logger.experiment  # noqa: B018  (starts the offline run, timed apart)
        wandb_setup.append(time.perf_counter() - start)
        callback = WandbMediaCallback(n_images=16, tsne_test=True)
        t = trainer(logger=logger, callbacks=[callback])
        start = time.perf_counter()
        t.test(module, datamodule=dm, verbose=False)
        seconds = time.perf_counter() - start
        start = time.perf_counter()
        wandb.finish()
        wandb_setup[-1] += time.perf_counter() - start
        return seconds

    def metrics_only() -> float:
        scores, maps = pd.concat(capture.scores), torch.cat(capture.maps)
        masks = torch.cat([dm.dataset("test")[i].mask.bool() for i in scores.index])  # [1,1,S,S]
        start = time.perf_counter()
        image_metrics(scores)
        pixel_metrics(
            maps.float(),
            masks,
            scores["category"].tolist(),
            torch.from_numpy(scores["has_mask"].to_numpy()),
        )
        return time.perf_counter() - start

    def tsne_val() -> float:
        start = time.perf_counter()
        module.eval()
        with torch.no_grad():
            z = torch.cat([module.net.encode(b.image) for b in dm.val_dataloader()])
        tsne_2d(z.numpy(), 0)
        return time.perf_counter() - start

    times = common.interleaved({"epoch": epoch, "plain": test_plain, "media": test_media}, rounds)
    times |= common.interleaved({"metrics": metrics_only, "tsne": tsne_val}, rounds)
    med = {k: common.median(v) for k, v in times.items()}
    rows = [
        [
            f"one training epoch (fit {n_fit - len(dm.dataset('val'))} + validate {len(dm.dataset('val'))})",
            med["epoch"],
            n_fit / med["epoch"],
            1.0,
        ],
        [
            f"test {n_test} images: maps, scores, metrics (no logger)",
            med["plain"],
            n_test / med["plain"],
            med["plain"] / med["epoch"],
        ],
        [
            f"test {n_test} images with all W&B media (offline)",
            med["media"],
            n_test / med["media"],
            med["media"] / med["epoch"],
        ],
        [
            "- of which AUROC/F1/pixel AUROC/AUPRO per class and defect",
            med["metrics"],
            "-",
            med["metrics"] / med["epoch"],
        ],
        [
            "W&B offline run start + finish (not in the rows above)",
            common.median(wandb_setup),
            "-",
            "-",
        ],
        [
            f"t-SNE of the {len(dm.dataset('val'))} validation latents (encode + embed)",
            med["tsne"],
            "-",
            med["tsne"] / med["epoch"],
        ],
    ]
    head = (
        f"Evaluation: ConvAutoencoder (channels-last) at {s.image_size} px, batch {s.batch_size}, default scoring; "
        f"median of {rounds} interleaved rounds; torch threads {torch.get_num_threads()}, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    headers = ["what", "seconds", "images/s", "x one training epoch"]
    return head + "\n\n" + common.table(headers, rows)


def main(argv: list[str] | None = None) -> str:
    return common.simple_main(__doc__, run, argv, quick=2, full=2)


if __name__ == "__main__":
    main()
