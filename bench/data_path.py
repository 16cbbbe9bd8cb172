"""Data path: training throughput of a fixed ConvAutoencoder fed by the project's MVTecDataModule,
by tensors already in memory (the model-only ceiling) and by a naive decode-every-time loader.

    python bench/data_path.py [--quick] [--rounds 5] [--steps 20]
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator

import common
import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset


class NaivePNGDataset(Dataset):
    """A typical first version: open, decode and resize one PNG with Pillow in every __getitem__."""

    def __init__(self, table: pd.DataFrame, image_size: int) -> None:
        self.paths, self.size = table["path"].tolist(), image_size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> common.Images:
        with Image.open(self.paths[i]) as img:
            rgb = img.convert("RGB").resize((self.size, self.size), Image.Resampling.BILINEAR)
        x = torch.from_numpy(np.asarray(rgb).copy()).permute(2, 0, 1).float() / 255.0
        return common.Images(image=x)


def naive_loader(table: pd.DataFrame, s: common.Size, workers: int) -> DataLoader:
    return DataLoader(
        NaivePNGDataset(table, s.image_size),
        batch_size=s.batch_size,
        shuffle=True,
        num_workers=workers,
        generator=torch.Generator().manual_seed(0),
    )


def in_memory_batches(images: np.ndarray, batch_size: int) -> Iterator[common.Images]:
    """The model-only ceiling: float batches prepared once, handed out with no work at all."""
    x = torch.from_numpy(images).float().div_(255.0)
    batches = [common.Images(b.contiguous()) for b in x.split(batch_size) if len(b) == batch_size]
    return common.forever(lambda: iter(batches))


def loader_only(batches: Iterator, n: int, warmup: int) -> float:
    """Images per second of a loader alone (no model)."""
    for _ in range(warmup):
        next(batches)
    count, start = 0, time.perf_counter()
    for _ in range(n):
        count += len(next(batches).image)
    return count / (time.perf_counter() - start)


def big_png_rate(quick: bool) -> tuple[int, float]:
    """Naive decode + resize rate (images/s, one process) on MVTec-sized sources (1024 px)."""
    from ae_lab.data import synthetic

    px = 128 if quick else 1024
    root = common.CACHE / f"synthetic_1cls_n8-5_{px}px"
    params = dict(categories=("cable",), n_train=8, n_test=5, image_size=px)
    if not synthetic.is_complete(root, **params):
        synthetic.generate(root, seed=0, **params)
    paths = sorted(str(p) for p in (root / "cable" / "train" / "good").iterdir())
    ds = NaivePNGDataset(pd.DataFrame({"path": paths}), 128)
    rates = []
    for _ in range(3):
        start = time.perf_counter()
        for i in range(len(ds)):
            ds[i]
        rates.append(len(ds) / (time.perf_counter() - start))
    return px, common.median(rates)


def run(quick: bool, rounds: int, steps: int) -> str:
    s = common.size(quick)
    dm0 = common.datamodule(s, num_workers=0)
    dm2 = common.datamodule(s, num_workers=2)
    for dm in (dm0, dm2):
        dm.prepare_data()
        dm.setup("fit")
    table = dm0.table("train")
    sources: dict[str, tuple[Iterator, int]] = {
        "model only (tensors in memory)": (
            in_memory_batches(dm0.dataset("train").images, s.batch_size),
            0,
        ),
        "project MVTecDataModule, workers=0": (common.forever(dm0.train_dataloader().__iter__), 0),
        "project MVTecDataModule, workers=2": (common.forever(dm2.train_dataloader().__iter__), 4),
        "naive Pillow per item, workers=0": (common.forever(naive_loader(table, s, 0).__iter__), 0),
        "naive Pillow per item, workers=2": (common.forever(naive_loader(table, s, 2).__iter__), 4),
    }
    torch.manual_seed(0)
    trainer = common.Trainer(common.conv_ae(s))
    trainer.step(next(sources["model only (tensors in memory)"][0]).image)  # allocator warm-up

    def train_fn(it: Iterator, warmup: int) -> Callable[[], float]:
        return lambda: common.timed_steps(trainer, it, steps, warmup + 1)

    def load_fn(it: Iterator, warmup: int) -> Callable[[], float]:
        return lambda: loader_only(it, 10, warmup + 1)

    train = common.interleaved({k: train_fn(*v) for k, v in sources.items()}, rounds)
    alone = common.interleaved({k: load_fn(*v) for k, v in sources.items()}, rounds)
    ceiling = common.median(train["model only (tensors in memory)"])
    rows = []
    for name in sources:
        rate = common.median(train[name])
        rows.append([name, rate, rate / ceiling, common.median(alone[name])])
    px, big = big_png_rate(quick)
    rows.append([f"naive decode+resize of {px} px PNGs, one process", "-", "-", big])
    head = (
        f"Data path: {len(table)} train images ({len(s.categories)} classes, {s.source_px} px PNGs"
        f" -> {s.image_size} px), ConvAutoencoder (channels-last), batch {s.batch_size}, AdamW; median of "
        f"{rounds} interleaved rounds of {steps} steps; torch threads {torch.get_num_threads()}, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    headers = ["variant", "train images/s", "x model-only", "loader alone images/s"]
    return head + "\n\n" + common.table(headers, rows)


def main(argv: list[str] | None = None) -> str:
    parser = common.parser(__doc__)
    parser.add_argument("--steps", type=int, default=None, help="timed steps per round")
    args = parser.parse_args(argv)
    steps = args.steps or (3 if args.quick else 20)
    return common.emit(run(args.quick, common.rounds_for(args, 2, 5), steps))


if __name__ == "__main__":
    main()
