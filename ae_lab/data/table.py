"""Scan an MVTec-AD-layout folder into a table, one row per image (path, category, split, defect,
label, mask_path); split a validation set off the training images; decode image and mask files."""

from __future__ import annotations

import os
import warnings
import zlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageOps

from ae_lab.errors import AeLabError

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})
COLUMNS = ("path", "category", "split", "defect", "label", "mask_path")
# The assignment's four classes: the default of the data module and of the synthetic stand-in.
DEFAULT_CATEGORIES = ("cable", "capsule", "screw", "transistor")
MIN_IMAGE_SIZE = 16  # px on a side; smaller images carry nothing to reconstruct
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


class EmptyFolderWarning(UserWarning):
    """A `test/<defect>/` folder holds no image: that defect type (or the good images) is missing
    from the test set."""


class BrokenLinkWarning(UserWarning):
    """A symbolic link in the dataset points nowhere; it is skipped."""


def _listdir(folder: Path, files: bool) -> list[Path]:
    """Sorted image files (or subfolders) of `folder`; hidden entries are skipped (macOS archives
    carry AppleDouble `._000.png` metadata files next to every image). Symbolic links count as
    what they point to; a broken one is skipped with a warning."""
    if not folder.is_dir():
        return []
    entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
    for p in entries:
        if p.is_symlink() and not p.exists() and (p.suffix.lower() in IMAGE_EXTENSIONS) == files:
            warnings.warn(
                f"{p} is a broken symbolic link (to {os.readlink(p)}): skipped. Point it at an "
                "existing file or folder, or delete it.",
                BrokenLinkWarning,
                stacklevel=3,
            )
    return sorted(
        p
        for p in entries
        if (p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS if files else p.is_dir())
    )


def _mask_of(image: Path, masks: dict[str, Path]) -> Path | None:
    """The mask of a defective image, or None (with a warning) when its size differs."""
    mask = masks.get(image.stem)
    if mask is None:
        return None
    try:
        with Image.open(image) as a, Image.open(mask) as b:  # headers only
            if a.size == b.size:
                return mask
            size = b.size
    except (OSError, ValueError, SyntaxError):  # unreadable files are reported when decoded
        return mask
    # Stretching the mask onto the image would score pixels against the wrong places.
    warnings.warn(
        f"Mask {mask} is {size[0]}x{size[1]} px but its image {image} is not the same size; the "
        "image is kept for image-level metrics but left out of pixel-level ones. Replace the mask "
        "with one of the image's size.",
        MaskSizeWarning,
        stacklevel=4,
    )
    return None


def _scan_category(root: Path, category: str) -> list[tuple]:
    base = root / category
    train = _listdir(base / "train" / "good", files=True)
    if not train:
        raise AeLabError(
            f"No training images in {base / 'train' / 'good'} (expected image files there, "
            f"extensions {sorted(IMAGE_EXTENSIONS)}). The dataset looks incomplete: re-download or "
            f"regenerate it, or drop '{category}' from `data.categories`."
        )
    rows = [(p, "train", "good", None) for p in train]
    empty = []
    for defect_dir in _listdir(base / "test", files=False):
        defect, images = defect_dir.name, _listdir(defect_dir, files=True)
        empty += [] if images else [str(defect_dir)]
        if defect == "good":
            rows += [(p, "test", defect, None) for p in images]
            continue
        # MVTec names masks `<stem>_mask.png`; a bare `<stem>.*` also counts. Reversed so that,
        # on a tie, `.png` (sorted first) is kept.
        gt = base / "ground_truth" / defect
        masks = {m.stem.removesuffix("_mask"): m for m in reversed(_listdir(gt, files=True))}
        missing = [p.name for p in images if p.stem not in masks]
        if missing:
            names = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
            warnings.warn(
                f"{len(missing)} defective image(s) in {defect_dir} have no mask in {gt} (looked "
                f"for <stem>_mask.png): {names}. They are kept for image-level metrics but "
                "skipped by pixel-level ones.",
                MissingMaskWarning,
                stacklevel=3,
            )
        rows += [(p, "test", defect, _mask_of(p, masks)) for p in images]
    if empty and len(rows) > len(train):  # all empty: the warning below says so
        warnings.warn(
            f"No image files in {', '.join(empty)}: '{category}' is tested without them (with "
            "only good or only defective test images left, its AUROC is undefined). The dataset "
            "looks incomplete: re-download or regenerate it, or delete the empty folder.",
            EmptyFolderWarning,
            stacklevel=3,
        )
    if len(rows) == len(train):
        warnings.warn(
            f"No test images for '{category}': no image files in {base / 'test'}/<defect>/ "
            "(e.g. test/good/). It is used for training only.",
            NoTestImagesWarning,
            stacklevel=3,
        )
    # (path, category, split, defect, label, mask_path or None)
    return [(str(p), category, s, d, int(d != "good"), m and str(m)) for p, s, d, m in rows]


def scan_mvtec(root: str | Path, categories: Iterable[str] | str) -> pd.DataFrame:
    """One row per image under `<root>/<category>/{train/good,test/<defect>}`, in a fixed order.

    Columns: path, category, split ("train" | "test"), defect, label (0 good / 1 defective),
    mask_path (`<root>/<category>/ground_truth/<defect>/<stem>_mask.png` or None). Raises
    AeLabError for a missing root, an unknown category or an empty `train/good` folder.
    """
    root = Path(root).expanduser().resolve()
    categories = [categories] if isinstance(categories, str) else [str(c) for c in categories]
    if not root.is_dir():
        raise AeLabError(f"The dataset folder {root} does not exist. {DOWNLOAD_HINT}")
    if not categories:
        raise AeLabError("`data.categories` is empty: list at least one category, e.g. [screw].")
    # A category named twice would have every image used twice (val images also in train).
    if twice := sorted({c for c in categories if categories.count(c) > 1}):
        raise AeLabError(
            f"`data.categories` lists {', '.join(twice)} more than once ({categories}): each "
            f"category's images would be used twice. List each category once, e.g. "
            f"data.categories=[{','.join(dict.fromkeys(categories))}]."
        )
    found = [p.name for p in _listdir(root, files=False)]
    unknown = [c for c in categories if c not in found]
    if unknown:
        raise AeLabError(
            f"Unknown categor{'y' if len(unknown) == 1 else 'ies'} {unknown} in `data.categories`: "
            f"there is no such folder under {root}. Categories found there: {found or 'none'}. "
            f"Fix `data.categories` or `data.root`."
        )
    rows = [row for category in categories for row in _scan_category(root, category)]
    df = pd.DataFrame(rows, columns=list(COLUMNS)).astype({"label": "int64"})
    # pandas 3 would infer a string dtype that turns None into NaN; the contract says None.
    df["mask_path"] = pd.Series([r[-1] for r in rows], dtype=object)
    return df


def split_train_val(df: pd.DataFrame, val_fraction: float, seed: int) -> pd.DataFrame:
    """Relabel a seeded, per-category fraction (0 <= f < 1) of the train rows as "val" (a copy).

    Every category with >= 2 train images gets >= 1 val image when `val_fraction > 0`, and keeps
    >= 1 train image. Each category's draw depends only on (seed, category), so adding a category
    leaves the others' splits unchanged.
    """
    out = df.copy()
    for category in sorted(out["category"].unique()) if val_fraction > 0 else []:
        train_idx = out.index[(out["category"] == category) & (out["split"] == "train")]
        n = len(train_idx)
        if n < 2:
            warnings.warn(
                f"'{category}' has {n} training image: with data.val_fraction={val_fraction} it "
                "needs at least 2 to hold one out, so it has no validation image.",
                stacklevel=2,
            )
            continue
        n_val = min(max(1, round(n * val_fraction)), n - 1)
        rng = np.random.default_rng([int(seed) % 2**63, zlib.crc32(category.encode())])
        out.loc[train_idx[rng.choice(n, size=n_val, replace=False)], "split"] = "val"
    return out


def _open(path: str | Path, size: int, kind: str) -> Image.Image:
    """Open and decode now, so that truncated files fail here naming the file."""
    try:
        with Image.open(path) as img:
            if img.format == "JPEG":  # libjpeg decodes at a reduced scale (still >= size)
                img.draft(img.mode, (size, size))
            img.load()
            # Upright as the camera meant; in place: a copy would double the memory of a big image.
            ImageOps.exif_transpose(img, in_place=True)
            return img
    except Image.DecompressionBombError as exc:
        raise AeLabError(
            f"Cannot read {kind} {path}: it is too large to decode safely ({exc}). Downscale it "
            f"(the images are resized to {size} px anyway) or delete it."
        ) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise AeLabError(
            f"Cannot read {kind} {path}: {exc}. The file is missing, truncated or not an image. "
            f"Delete it and re-download the dataset (for `data=synthetic`, delete the generated "
            f"folder so that it is regenerated)."
        ) from exc


def load_image(path: str | Path, size: int) -> np.ndarray:
    """Read any image file as RGB uint8 [size, size, 3] (non-square images are stretched).

    Grey images stay grey (3 equal channels); 16-bit grey levels are rescaled, not clipped; alpha
    is dropped. Raises AeLabError for an unreadable file or one under MIN_IMAGE_SIZE px a side.
    """
    img = _open(path, size, "image")
    if min(img.size) < MIN_IMAGE_SIZE:
        raise AeLabError(
            f"Image {path} is {img.width}x{img.height} px, below the minimum of {MIN_IMAGE_SIZE} "
            "px a side: stretched, it would be a flat image. Replace or delete the file."
        )
    deep = img.mode.startswith("I") or img.mode == "F"  # 16/32-bit grey, resized as it is
    if not deep and img.mode != (mode := "L" if img.mode in ("1", "L", "LA") else "RGB"):
        img = img.convert(mode)
    # Grey is resized before it becomes RGB: 3x less work. reducing_gap first shrinks by an
    # integer factor (box filter): much faster on MVTec's 700-1024 px images, no visible cost
    # (Pillow cannot reduce 16-bit "I;16" images; they are resized in one antialiased pass).
    gap = None if img.mode.startswith("I;16") else 3.0
    arr = np.asarray(img.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=gap))
    if deep:  # 65535 -> 255 exactly; after the resize, so a big image costs no float copies
        arr = np.clip(np.rint(arr / 257.0), 0, 255).astype(np.uint8)
    return np.repeat(arr[:, :, None], 3, axis=2) if arr.ndim == 2 else arr


def load_mask(path: str | Path | None, size: int) -> np.ndarray:
    """Read a ground-truth mask as bool [size, size]; None (no mask) gives all False.

    Masks are binarised at half their peak value (255 -> > 127.5, robust to JPEG noise; 0/1 label
    masks -> > 0), then resized nearest-neighbour so they stay binary.
    """
    if path is None:
        return np.zeros((size, size), dtype=bool)
    img = _open(path, size, "mask")
    # Raw values for single-channel modes so 16-bit 0/1 label masks are not rounded to 0.
    single = img.mode in ("1", "L", "F") or img.mode.startswith("I")
    values = np.asarray(img if single else img.convert("L"), dtype=np.float64)
    peak = values.max(initial=0.0)
    binary = Image.fromarray(values > (peak / 2 if peak > 1 else 0))
    return np.asarray(binary.resize((size, size), Image.Resampling.NEAREST), dtype=bool)
