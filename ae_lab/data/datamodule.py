"""LightningDataModule over an MVTec-layout folder: whole splits held in memory as uint8 tensors,
one tensor index per batch (no per-sample Python work)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from lightning import LightningDataModule
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from ae_lab.data import pose
from ae_lab.data.cache import load_or_build
from ae_lab.data.lock import file_lock
from ae_lab.data.table import DEFAULT_CATEGORIES, check_distinct, scan_mvtec, split_train_val
from ae_lab.errors import AeLabError

SPLITS = ("train", "val", "test")


class InMemoryImages(Dataset):
    """A split in memory: images uint8 [N,3,S,S], masks bool [N,S,S], plus its table's columns.

    `__getitems__` (used by DataLoader for a whole batch of indices) returns the contract's batch
    dict directly: image float32 [B,3,S,S] in [0,1], label long [B], mask float32 [B,1,S,S],
    has_mask bool [B], index long [B] and lists category/defect/path.
    """

    def __init__(self, images: np.ndarray, masks: np.ndarray, table: pd.DataFrame) -> None:
        self.images, self.masks = images, masks
        self.label = table["label"].to_numpy(dtype=np.int64)
        self.has_mask = table["mask_path"].map(_is_path).to_numpy(dtype=bool)
        self.category = table["category"].tolist()
        self.defect = table["defect"].tolist()
        self.path = table["path"].tolist()

    def __len__(self) -> int:
        return len(self.label)

    def __getitems__(self, indices: list[int]) -> dict[str, Any]:
        # numpy, not torch, for gather + cast: single-threaded and predictable, whereas torch's
        # intra-op thread pool made these small ops 10-100x slower on a busy 2-core machine.
        idx = np.asarray(indices, dtype=np.int64)
        image = np.divide(self.images[idx], np.float32(255.0), dtype=np.float32)
        mask = self.masks[idx][:, None].astype(np.float32)
        return {
            "image": torch.from_numpy(image),
            "label": torch.from_numpy(self.label[idx]),
            "mask": torch.from_numpy(mask),
            "has_mask": torch.from_numpy(self.has_mask[idx]),
            "category": [self.category[i] for i in idx],
            "defect": [self.defect[i] for i in idx],
            "path": [self.path[i] for i in idx],
            "index": torch.from_numpy(idx),
        }

    def __getitem__(self, i: int) -> dict[str, Any]:
        """One sample, unbatched (image [3,S,S], mask [1,S,S], scalars)."""
        batch = self.__getitems__([int(i)])
        return {k: v[0] for k, v in batch.items()}


def _number(key: str, value: Any, kind: type, expected: str) -> Any:
    """`value` as `kind` (int or float), or AeLabError naming `data.<key>`; bools are rejected."""
    integral = isinstance(value, int | np.integer) or (
        isinstance(value, float | np.floating) and float(value).is_integer()
    )
    if not isinstance(value, bool) and (
        integral if kind is int else isinstance(value, int | float | np.number)
    ):
        return kind(value)
    raise AeLabError(
        f"`data.{key}` must be {expected}, got {value!r}. Fix it on the command line "
        f"(data.{key}=...) or in the data config."
    )


def _patterns(value: Iterable[str] | str) -> list[str]:
    """`data.align` / `data.straighten`: one shell pattern or a list of them."""
    return [value] if isinstance(value, str) else [str(p) for p in value]


def _is_path(value: object) -> bool:
    return isinstance(value, str)


def _batch_is_ready(batch: dict[str, Any]) -> dict[str, Any]:
    """`__getitems__` already built the batch; DataLoader's default collate must not touch it."""
    return batch


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
        batch_size = _number("batch_size", batch_size, int, "an integer >= 1, e.g. 32")
        val_fraction = _number("val_fraction", val_fraction, float, "a number in [0, 1), e.g. 0.1")
        image_size = _number("image_size", image_size, int, "an integer >= 8, e.g. 128")
        num_workers = _number("num_workers", num_workers, int, "an integer >= 0, e.g. 0")
        if batch_size < 1:
            raise AeLabError(f"`data.batch_size` must be >= 1, got {batch_size}.")
        if not 0.0 <= val_fraction < 1.0:
            raise AeLabError(f"`data.val_fraction` must be in [0, 1), got {val_fraction}.")
        if image_size < 8:
            raise AeLabError(f"`data.image_size` must be >= 8 pixels, got {image_size}.")
        if num_workers < 0:
            raise AeLabError(f"`data.num_workers` must be >= 0, got {num_workers}.")
        self.root = Path(root).expanduser()
        self.categories = (
            [categories] if isinstance(categories, str) else [str(c) for c in categories]
        )
        check_distinct(self.categories)
        self.image_size, self.seed = int(image_size), int(seed)
        self.val_fraction = float(val_fraction)
        self.batch_size, self.num_workers = int(batch_size), int(num_workers)
        self.cache_dir = cache_dir
        self.generate = None if generate is None else dict(generate)
        self.augment = bool(augment)
        self.align, self.straighten = _patterns(align), _patterns(straighten)
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else bool(pin_memory)
        self._table: pd.DataFrame | None = None
        self._datasets: dict[str, InMemoryImages] = {}
        self._augmenter: torch.nn.Module | None = None

    # ---- data on disk -------------------------------------------------------------------------
    def _generate_if_needed(self) -> None:
        if self.generate is None:
            return
        from ae_lab.data import synthetic  # lazy: only synthetic runs need the generator

        params = {**self.generate, "categories": tuple(self.categories)}
        if synthetic.is_complete(self.root, **params):
            return
        # Parallel runs on one machine (grid runner, joblib launcher, W&B agents) wait here for
        # the first one's data instead of generating it again under each other's feet.
        with contextlib.suppress(OSError):  # `generate` reports an unwritable root
            self.root.mkdir(parents=True, exist_ok=True)
        with file_lock(self.root / ".generate.lock", f"generating synthetic data in {self.root}"):
            if not synthetic.is_complete(self.root, **params):
                synthetic.generate(self.root, **params)

    def prepare_data(self) -> None:
        """Generate the synthetic set if asked, and build the decode caches (rank 0 only)."""
        table = self._full_table()
        for split in ("train", "test"):
            rows = table[table["split"] == split]
            if rows.empty:  # nothing to cache (a dataset without test images)
                continue
            load_or_build(rows, self.image_size, self.cache_dir, self.root)

    def _full_table(self) -> pd.DataFrame:
        if self._table is None:
            self._generate_if_needed()
            self._table = scan_mvtec(self.root, self.categories)
        return self._table

    def table(self, split: str) -> pd.DataFrame:
        """Rows of `split` ("train" | "val" | "test"); row i is batch `index` i."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        table = split_train_val(self._full_table(), self.val_fraction, self.seed)
        return table[table["split"] == split].reset_index(drop=True)

    # ---- datasets -----------------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        """Load the splits `stage` needs into memory; calling it again is a no-op."""
        if stage in (None, "fit", "validate") and "train" not in self._datasets:
            self._load("train", ("train", "val"))
        if stage in (None, "test", "predict") and "test" not in self._datasets:
            self._load("test", ("test",))

    def _load(self, source: str, splits: tuple[str, ...]) -> None:
        """Decode (or load from cache) scanned split `source`, then cut it into `splits`."""
        full = self._full_table()
        rows = full[full["split"] == source]
        if source == "test" and rows.empty:
            raise AeLabError(self.no_test_images_message())
        images, masks = load_or_build(rows, self.image_size, self.cache_dir, self.root)
        images, masks = self._align(images, masks, rows["category"].to_numpy())
        assigned = split_train_val(full, self.val_fraction, self.seed).loc[rows.index, "split"]
        for split in splits:
            pos = np.flatnonzero((assigned == split).to_numpy())
            table = rows.iloc[pos].reset_index(drop=True)
            self._datasets[split] = InMemoryImages(images[pos], masks[pos], table)

    def no_test_images_message(self) -> str:
        """Why there is nothing to test, naming the folders that were searched."""
        where = ", ".join(str(self.root.resolve() / c / "test") for c in self.categories)
        return (
            f"Nothing to test: data.categories={self.categories} have no test images (looked "
            f"for image files in <defect>/ subfolders of {where}). Point `data.root` at a "
            "complete dataset, or set `test=false` to train only."
        )

    def _align(
        self, images: np.ndarray, masks: np.ndarray, categories: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Pose-normalise the rows of the categories named by `align` / `straighten` (a copy; the
        cache stays raw)."""
        full = np.array([pose.matches(c, self.align) for c in categories], dtype=bool)
        tilt = np.array([pose.matches(c, self.straighten) for c in categories], dtype=bool)
        if not (full | tilt).any():
            return images, masks
        images, masks = images.copy(), masks.copy()
        for rows, any_angle in (
            (np.flatnonzero(full), True),
            (np.flatnonzero(tilt & ~full), False),
        ):
            if rows.size:
                out = pose.align_uint8(
                    torch.from_numpy(images[rows]),
                    torch.from_numpy(masks[rows]),
                    any_angle=any_angle,
                )
                images[rows], masks[rows] = out[0].numpy(), out[1].numpy()
        return images, masks

    def dataset(self, split: str) -> InMemoryImages:
        self.setup("test" if split == "test" else "fit")
        return self._datasets[split]

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        generator = torch.Generator().manual_seed(self.seed) if shuffle else None
        return DataLoader(
            self.dataset(split),
            batch_size=self.batch_size,
            shuffle=shuffle,
            generator=generator,
            collate_fn=_batch_is_ready,
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
    def augment_batch(self, images: Tensor) -> Tensor:
        """Mild nuisance augmentation of images [B,3,S,S] in [0,1] (same shape, in [0,1])."""
        if self._augmenter is None:
            import kornia.augmentation as K  # lazy: kornia is slow to import

            self._augmenter = torch.nn.Sequential(
                K.ColorJitter(brightness=0.1, contrast=0.1, p=0.8),
                K.RandomAffine(
                    degrees=5.0, translate=(0.04, 0.04), padding_mode="reflection", p=0.8
                ),
            )
        return self._augmenter.to(images.device)(images).clamp_(0.0, 1.0)

    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict[str, Any]:
        trainer = self.trainer
        if self.augment and trainer is not None and trainer.training:
            batch["image"] = self.augment_batch(batch["image"])
        return batch
