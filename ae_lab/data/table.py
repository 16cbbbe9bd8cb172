"""Scan an MVTec-AD-layout folder into a table: one row per image (path, category, split, defect,
label, mask_path), and split a validation set off the training images."""

from __future__ import annotations

import warnings
import zlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from ae_lab.errors import AeLabError

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})
COLUMNS = ("path", "category", "split", "defect", "label", "mask_path")
# The assignment's four classes: the default of the data module and of the synthetic stand-in.
DEFAULT_CATEGORIES = ("cable", "capsule", "screw", "transistor")
DOWNLOAD_HINT = (
    "MVTec AD can be downloaded with `python -m ae_lab.data.download --root DIR` or from "
    "https://www.mvtec.com/company/research/datasets/mvtec-ad; then set the environment variable "
    "MVTEC_ROOT or pass `data.root=DIR`. To run without it, use the generated stand-in: `data=synthetic`."
)


class MissingMaskWarning(UserWarning):
    """A defective test image has no ground-truth mask; it is kept with `mask_path=None`."""


class MaskSizeWarning(UserWarning):
    """A ground-truth mask differs in size from its image; pixel metrics leave that image out."""


class NoTestImagesWarning(UserWarning):
    """A category has no test images; it can only be trained on."""


def _images_in(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    # Hidden files are skipped like hidden folders: macOS archives carry AppleDouble `._000.png`
    # metadata files next to every image, which are not images.
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS
    )


def _subfolders(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _mask_index(folder: Path) -> dict[str, Path]:
    """Image stem -> mask file: MVTec names masks `<stem>_mask.png`; a bare `<stem>.*` also counts."""
    index: dict[str, Path] = {}
    # Reversed sort so that, on a tie, `.png` (sorted first) is the one kept.
    for mask in reversed(_images_in(folder)):
        stem = mask.stem
        index[stem.removesuffix("_mask")] = mask
    return index


def _check_categories(root: Path, categories: list[str]) -> None:
    if not root.is_dir():
        raise AeLabError(f"The dataset folder {root} does not exist. {DOWNLOAD_HINT}")
    if not categories:
        raise AeLabError("`data.categories` is empty: list at least one category, e.g. [screw].")
    check_distinct(categories)
    found = [p.name for p in _subfolders(root)]
    unknown = [c for c in categories if c not in found]
    if unknown:
        raise AeLabError(
            f"Unknown categor{'y' if len(unknown) == 1 else 'ies'} {unknown} in `data.categories`: "
            f"there is no such folder under {root}. Categories found there: {found or 'none'}. "
            f"Fix `data.categories` or `data.root`."
        )


def check_distinct(categories: list[str]) -> None:
    """Raise AeLabError when `data.categories` names a category twice (every image would be read
    twice, and validation images would also be training images)."""
    twice = sorted({c for c in categories if categories.count(c) > 1})
    if twice:
        raise AeLabError(
            f"`data.categories` lists {', '.join(twice)} more than once ({categories}): each "
            f"category's images would be used twice. List each category once, e.g. "
            f"data.categories=[{','.join(dict.fromkeys(categories))}]."
        )


def _size_mismatch(image: Path, mask: Path) -> tuple[int, int] | None:
    """The mask's (width, height) when it differs from its image's, else None (headers only)."""
    from PIL import Image

    try:
        with Image.open(image) as a, Image.open(mask) as b:
            return None if a.size == b.size else b.size
    except (OSError, ValueError, SyntaxError):  # unreadable files are reported when decoded
        return None


def _scan_category(root: Path, category: str) -> list[dict]:
    base = root / category
    train_good = base / "train" / "good"
    train = _images_in(train_good)
    if not train:
        raise AeLabError(
            f"No training images in {train_good} (expected image files there, "
            f"extensions {sorted(IMAGE_EXTENSIONS)}). The dataset looks incomplete: re-download or "
            f"regenerate it, or drop '{category}' from `data.categories`."
        )
    rows = [_row(p, category, "train", "good", None) for p in train]
    for defect_dir in _subfolders(base / "test"):
        defect = defect_dir.name
        images = _images_in(defect_dir)
        if defect == "good":
            rows += [_row(p, category, "test", defect, None) for p in images]
            continue
        masks = _mask_index(base / "ground_truth" / defect)
        missing = [p for p in images if p.stem not in masks]
        if missing:
            names = ", ".join(p.name for p in missing[:5]) + (", ..." if len(missing) > 5 else "")
            warnings.warn(
                f"{len(missing)} defective image(s) in {defect_dir} have no mask in "
                f"{base / 'ground_truth' / defect} (looked for <stem>_mask.png): {names}. They are "
                f"kept for image-level metrics but skipped by pixel-level ones.",
                MissingMaskWarning,
                stacklevel=3,
            )
        for p in images:
            mask = masks.get(p.stem)
            if mask is not None and (size := _size_mismatch(p, mask)) is not None:
                # Stretching the mask onto the image would score pixels against the wrong places.
                warnings.warn(
                    f"Mask {mask} is {size[0]}x{size[1]} px but its image {p} is not the same size; "
                    "the image is kept for image-level metrics but left out of pixel-level ones. "
                    "Replace the mask with one of the image's size.",
                    MaskSizeWarning,
                    stacklevel=3,
                )
                mask = None
            rows.append(_row(p, category, "test", defect, mask))
    if not any(row["split"] == "test" for row in rows):
        warnings.warn(
            f"No test images for '{category}': no image files in {base / 'test'}/<defect>/ "
            "(e.g. test/good/). It is used for training only.",
            NoTestImagesWarning,
            stacklevel=3,
        )
    return rows


def _row(path: Path, category: str, split: str, defect: str, mask: Path | None) -> dict:
    return {
        "path": str(path),
        "category": category,
        "split": split,
        "defect": defect,
        "label": int(defect != "good"),
        "mask_path": None if mask is None else str(mask),
    }


def scan_mvtec(root: str | Path, categories: Iterable[str] | str) -> pd.DataFrame:
    """One row per image under `<root>/<category>/{train/good,test/<defect>}`, in a fixed order.

    Columns: path, category, split ("train" | "test"), defect, label (0 good / 1 defective),
    mask_path (`<root>/<category>/ground_truth/<defect>/<stem>_mask.png` or None). Raises
    AeLabError for a missing root, an unknown category or an empty `train/good` folder.
    """
    root = Path(root).expanduser().resolve()
    categories = [categories] if isinstance(categories, str) else [str(c) for c in categories]
    _check_categories(root, categories)
    rows = [row for category in categories for row in _scan_category(root, category)]
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    df["label"] = df["label"].astype("int64")
    # pandas 3 would infer a string dtype that turns None into NaN; the contract says None.
    df["mask_path"] = pd.Series([r["mask_path"] for r in rows], dtype=object)
    return df


def split_train_val(df: pd.DataFrame, val_fraction: float, seed: int) -> pd.DataFrame:
    """Relabel a seeded, per-category fraction of the train rows as split "val" (a copy).

    Every category with >= 2 train images gets >= 1 val image when `val_fraction > 0`, and keeps
    >= 1 train image. Each category's draw depends only on (seed, category), so adding a category
    leaves the others' splits unchanged.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise AeLabError(f"`data.val_fraction` must be in [0, 1), got {val_fraction}.")
    out = df.copy()
    if val_fraction == 0:
        return out
    for category in sorted(out["category"].unique()):
        train_idx = out.index[(out["category"] == category) & (out["split"] == "train")]
        n = len(train_idx)
        if n < 2:
            continue
        n_val = min(max(1, round(n * val_fraction)), n - 1)
        rng = np.random.default_rng([int(seed) % 2**63, zlib.crc32(category.encode())])
        chosen = rng.choice(n, size=n_val, replace=False)
        out.loc[train_idx[chosen], "split"] = "val"
    return out
