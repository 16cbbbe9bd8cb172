"""LightningDataModule over an MVTec-layout folder: whole splits held in memory as uint8 tensors,
one tensor index per batch (no per-sample Python work).

The images are decoded and resized once; `joblib.Memory` stores the arrays in the cache folder,
keyed by the image size and every source file's path, size, mtime, inode and ctime (masks
included): editing, replacing (even by a file of the same size with its mtime restored, as `cp -p`
or `tar` do: the ctime still moves), adding or removing a file makes a new entry, and only the
most recently used entries are kept.
On MVTec's 700-1024 px PNGs decoding costs 20-40 s per run on 2 cores, most of a run on a GPU;
loading the cache, a fraction of a second.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from fnmatch import fnmatch
from functools import cached_property
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import torch
from filelock import FileLock
from lightning import LightningDataModule
from torch.utils.data import DataLoader, Dataset, Sampler, default_convert
from tqdm.auto import tqdm

from ae_lab.batch import Batch
from ae_lab.data import pose
from ae_lab.data.table import DEFAULT_CATEGORIES, load_image, load_mask, scan_mvtec, split_train_val
from ae_lab.errors import AeLabError, check_number

DECODE_VERSION = 3  # bump when the decoding changes, so old entries are not reused
log = logging.getLogger(__name__)


def _decode(
    images: list[str], masks: list[str | None], size: int, stamps: list[tuple]
) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 [N,3,S,S] and masks bool [N,S,S]. `stamps` (the decoding's version, each
    file's `_stamp`) is not used here: joblib hashes it into the cache key."""

    def one(image: str, mask: str | None) -> tuple[np.ndarray, np.ndarray]:
        return load_image(image, size).transpose(2, 0, 1), load_mask(mask, size)

    # Threads suffice: Pillow releases the GIL while decoding and resizing.
    with ThreadPoolExecutor(max_workers=min(16, os.cpu_count() or 1)) as pool:
        desc = f"decoding {len(images)} images at {size}px"
        pairs = tqdm(pool.map(one, images, masks), desc, len(images), leave=False, disable=None)
        decoded_images, decoded_masks = zip(*pairs, strict=True)
    return np.stack(decoded_images), np.stack(decoded_masks)


def _stamp(path: str) -> tuple[int, int, int, int]:
    """What identifies a file's content without reading it: size and mtime, which a copy with
    `cp -p` or an unpacked archive can both keep, plus inode and ctime, which no user can set:
    any write or replacement moves the ctime."""
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns


def load_or_build(
    rows: pd.DataFrame, image_size: int, cache_dir: str | Path | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 [N, 3, S, S] and masks bool [N, S, S] for `rows` (in row order), from the cache
    under `cache_dir` (default `$AE_LAB_CACHE`, else `~/.cache/ae_lab`), decoded and stored when
    missing, stale or unreadable."""
    cache_dir = Path(cache_dir or os.environ.get("AE_LAB_CACHE") or "~/.cache/ae_lab").expanduser()
    try:
        memory, lock = joblib.Memory(cache_dir, verbose=0), FileLock(cache_dir / "decode.lock")
    except OSError as exc:
        warnings.warn(
            f"Cannot use the decode cache folder {cache_dir} ({exc}); decoding without it. Set "
            "`data.cache_dir` or the environment variable AE_LAB_CACHE to a writable folder.",
            stacklevel=2,
        )
        memory, lock = joblib.Memory(None), contextlib.nullcontext()
    images, masks = rows["path"].tolist(), rows["mask_path"].tolist()
    stamps = [DECODE_VERSION] + [_stamp(f) for f in images + masks if f]
    # Parallel runs on one machine wait here for the first one's cache instead of decoding again.
    with lock:
        out = memory.cache(_decode)(images, masks, int(image_size), stamps)
        memory.reduce_size(items_limit=8)  # datasets x image sizes kept decoded
    return out


class InMemoryImages(Dataset):
    """A split in memory: images uint8 [N,3,S,S], masks bool [N,S,S], plus its table's columns.

    `__getitems__` (used by DataLoader for a whole batch of indices) returns a whole
    `ae_lab.batch.Batch` directly.
    """

    def __init__(self, images: np.ndarray, masks: np.ndarray, table: pd.DataFrame) -> None:
        self.images, self.masks = images, masks
        self.label = table["label"].to_numpy(dtype=np.int64, copy=True)
        self.has_mask = table["mask_path"].notna().to_numpy(copy=True)
        self.category, self.defect = table["category"].tolist(), table["defect"].tolist()
        self.path = table["path"].tolist()

    def __len__(self) -> int:
        return len(self.label)

    def __getitems__(self, indices: list[int]) -> Batch:
        # numpy, not torch, for gather + cast: single-threaded and predictable, whereas torch's
        # intra-op thread pool makes these small ops much slower on a busy machine.
        idx = np.asarray(indices, dtype=np.int64)
        image = np.divide(self.images[idx], np.float32(255.0), dtype=np.float32)
        return Batch(
            image=torch.from_numpy(image),
            label=torch.from_numpy(self.label[idx]),
            mask=torch.from_numpy(self.masks[idx][:, None].astype(np.float32)),
            has_mask=torch.from_numpy(self.has_mask[idx]),
            index=torch.from_numpy(idx),
            category=[self.category[i] for i in idx],
            defect=[self.defect[i] for i in idx],
            path=[self.path[i] for i in idx],
        )

    def __getitem__(self, i: int) -> Batch:
        """One sample, as a batch of one."""
        return self.__getitems__([int(i)])


class EpochShuffle(Sampler[int]):
    """A random order per epoch that depends only on (seed, epoch): Lightning calls `set_epoch`,
    so a run resumed at epoch k sees the same batches as one that never stopped."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=generator).tolist())


def _usable_workers(requested: int) -> int:
    """`requested` DataLoader workers, at most the CPU cores this process may use (more only
    compete for them; torch would warn once per loader), saying so in one line when it clamps."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if cores and requested > cores:
        log.warning(
            f"MVTecDataModule(num_workers={requested}): more DataLoader workers than the {cores} "
            f"CPU cores this process may use; using {cores}. Set `data.num_workers` to at most "
            f"{cores} to silence this."
        )
        return cores
    return requested


def _names(value: Iterable[str] | str) -> list[str]:
    """`data.categories`, `data.align`, `data.straighten`: one name (or pattern) or a list."""
    return [value] if isinstance(value, str) else [str(v) for v in value]


class MVTecDataModule(LightningDataModule):
    """MVTec AD (or the synthetic stand-in) with a seeded per-category train/val split.

    `generate`: synthetic-generator kwargs; when given, `prepare_data` writes the synthetic set
    into `root` unless it is already complete. `augment` applies mild nuisance augmentations
    (brightness/contrast, ±4% shift, ±5° rotation) to training batches after device transfer.
    `align`: shell patterns of the categories whose images (and masks) are pose-normalised once
    when loaded (`ae_lab.data.pose`: object upright and centred), e.g. `["screw*"]` for MVTec's
    screw, which lies at any angle; leave out classes where a pose change is a defect
    (transistor's `misplaced`). `straighten`: patterns of the categories photographed in one
    pose with a little jitter: centred and turned by the smallest angle that makes their main
    axis vertical or horizontal (no flips). A class named by both is aligned.
    """

    def __init__(
        self,
        root: str | Path,
        categories: Iterable[str] | str = DEFAULT_CATEGORIES,
        image_size: int = 128,
        val_fraction: float = 0.1,
        batch_size: int = 32,
        num_workers: int = 0,
        seed: int = 42,
        cache_dir: str | Path | None = None,
        generate: Mapping[str, Any] | None = None,
        augment: bool = False,
        pin_memory: bool | None = None,
        align: Iterable[str] | str = (),
        straighten: Iterable[str] | str = (),
    ) -> None:
        super().__init__()
        owner = MVTecDataModule
        check_number(owner, "batch_size", batch_size, 1, 2**16, integer=True)
        check_number(owner, "val_fraction", val_fraction, 0.0, 0.99)
        check_number(owner, "image_size", image_size, 8, 4096, integer=True)
        check_number(owner, "num_workers", num_workers, 0, 1024, integer=True)
        check_number(owner, "seed", seed, 0, 2**32 - 1, integer=True)
        self.batch_size, self.val_fraction = int(batch_size), float(val_fraction)
        self.image_size, self.num_workers = int(image_size), _usable_workers(int(num_workers))
        self.root, self.seed, self.cache_dir = Path(root).expanduser(), int(seed), cache_dir
        self.categories = _names(categories)  # scan_mvtec rejects a category named twice
        self.generate = None if generate is None else dict(generate)
        self.augment = bool(augment)
        self.align, self.straighten = _names(align), _names(straighten)
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else bool(pin_memory)
        self._table: pd.DataFrame | None = None
        self._datasets: dict[str, InMemoryImages] = {}

    # ---- data on disk -------------------------------------------------------------------------
    def prepare_data(self) -> None:
        """Write the synthetic set if asked, and build the decode cache (Lightning calls it on
        one process per machine; again, it only reads)."""
        if self.generate is not None:
            from ae_lab.data import synthetic  # lazy: only synthetic runs need the generator

            params = {**self.generate, "categories": tuple(self.categories)}
            # Parallel runs on one machine (grid runner, joblib launcher, W&B agents) wait here for
            # the first one's data instead of generating it again under each other's feet.
            if not synthetic.is_complete(self.root, **params):
                with FileLock(self.root / ".generate.lock"):
                    if not synthetic.is_complete(self.root, **params):
                        synthetic.generate(self.root, **params)
        load_or_build(self.table(), self.image_size, self.cache_dir)

    def table(self, split: str | None = None) -> pd.DataFrame:
        """Rows of `split` ("train" | "val" | "test"); row i is batch `index` i. Without `split`,
        every row (split train, val or test), in scan order. Reads the folder once; a synthetic
        set must have been written by `prepare_data`."""
        if self._table is None:
            table = scan_mvtec(self.root, self.categories)
            self._table = split_train_val(table, self.val_fraction, self.seed)
        if split is None:
            return self._table
        return self._table[self._table["split"] == split].reset_index(drop=True)

    # ---- datasets -----------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        """Load every split into memory (decoded once, then from the cache); a no-op when called
        again."""
        if stage in ("test", "predict") and self.table("test").empty:
            raise AeLabError(self.no_test_images_message())
        if self._datasets:
            return
        table = self.table()
        images, masks = load_or_build(table, self.image_size, self.cache_dir)
        images, masks = self._align(images, masks, table["category"])
        for split in ("train", "val", "test"):
            rows = np.flatnonzero(table["split"] == split)
            self._datasets[split] = InMemoryImages(images[rows], masks[rows], self.table(split))

    def no_test_images_message(self) -> str:
        """Why there is nothing to test, naming the folders that were searched."""
        where = ", ".join(str(self.root.resolve() / c / "test") for c in self.categories)
        return (
            f"Nothing to test: data.categories={self.categories} have no test images (looked "
            f"for image files in <defect>/ subfolders of {where}). Point `data.root` at a "
            "complete dataset, or set `test=false` to train only."
        )

    def _align(
        self, images: np.ndarray, masks: np.ndarray, categories: pd.Series
    ) -> tuple[np.ndarray, np.ndarray]:
        """Pose-normalise, in place, the rows of the categories named by `align` (any angle) or
        `straighten` (the arrays are fresh from the cache, which stays raw)."""
        for category in categories.unique():
            full = any(fnmatch(category, p) for p in self.align)  # shell patterns: `screw*`
            if full or any(fnmatch(category, p) for p in self.straighten):
                rows = (categories == category).to_numpy()
                image, mask = pose.align_uint8(
                    torch.from_numpy(images[rows]), torch.from_numpy(masks[rows]), any_angle=full
                )
                images[rows], masks[rows] = image.numpy(), mask.numpy()
        return images, masks

    def dataset(self, split: str) -> InMemoryImages:
        self.setup("test" if split == "test" else "fit")
        return self._datasets[split]

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        return DataLoader(
            self.dataset(split),
            batch_size=self.batch_size,
            sampler=EpochShuffle(len(self.dataset(split)), self.seed) if shuffle else None,
            collate_fn=default_convert,  # `__getitems__` built the Batch: kept as it is
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=self.pin_memory,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    # ---- augmentation -------------------------------------------------------------------------
    @cached_property
    def augmenter(self) -> torch.nn.Module:
        """Mild nuisance augmentation of images [B,3,S,S] in [0,1]: brightness/contrast, ±4%
        shift, ±5° rotation."""
        import kornia.augmentation as K  # lazy: kornia is slow to import

        return torch.nn.Sequential(
            K.ColorJitter(brightness=0.1, contrast=0.1, p=0.8),
            K.RandomAffine(degrees=5.0, translate=(0.04, 0.04), padding_mode="reflection", p=0.8),
        )

    def on_after_batch_transfer(self, batch: Batch, dataloader_idx: int) -> Batch:
        if self.augment and self.trainer is not None and self.trainer.training:
            image = self.augmenter.to(batch.image.device)(batch.image).clamp_(0.0, 1.0)
            batch = replace(batch, image=image)
        return batch
