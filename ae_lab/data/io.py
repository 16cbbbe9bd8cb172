"""Decode image and mask files with Pillow into fixed-size uint8 / bool arrays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ae_lab.errors import AeLabError

# Pillow's resize is antialiased when downscaling; reducing_gap first shrinks by an integer
# factor (box filter), which is much faster on MVTec's 700-1024 px images at no visible cost.
_RESAMPLE = Image.Resampling.BILINEAR
_REDUCING_GAP = 3.0
_PIL_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)


def _unreadable(path: Path, kind: str, exc: Exception) -> AeLabError:
    return AeLabError(
        f"Cannot read {kind} {path}: {exc}. The file is missing, truncated or not an image. "
        f"Delete it and re-download the dataset (for `data=synthetic`, delete the generated "
        f"folder so that it is regenerated)."
    )


def _open(path: Path, size: int, kind: str) -> Image.Image:
    img = None
    try:
        img = Image.open(path)
        if img.format == "JPEG":
            # Let libjpeg decode at a reduced scale (still >= size): far fewer pixels to decode.
            img.draft(img.mode, (size, size))
        img.load()  # decode now so that truncated files fail here, not later
    except _PIL_ERRORS as exc:
        if img is not None:
            img.close()
        raise _unreadable(path, kind, exc) from exc
    return img


def _to_gray_or_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode -> "L" or "RGB". 16/32-bit and float grey levels are rescaled, not clipped;
    alpha is dropped (the stored colour is kept, not composited onto a background)."""
    if img.mode in ("L", "RGB"):
        return img
    if img.mode.startswith("I") or img.mode == "F":
        arr = np.asarray(img).astype(np.float64)
        peak = float(arr.max(initial=0.0))
        if img.mode.startswith("I;16") or 255 < peak <= 65535:
            arr = arr / 257.0  # 65535 -> 255 exactly
        elif img.mode == "F" and peak <= 1.0:
            arr = arr * 255.0
        elif peak > 65535:
            arr = arr * (255.0 / peak)
        return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8))
    if img.mode in ("1", "LA", "La") or (img.mode == "P" and _palette_is_gray(img)):
        return img.convert("L")
    return img.convert("RGB")  # RGBA, RGBa, P, PA, CMYK, YCbCr, LAB, HSV, ...


def _palette_is_gray(img: Image.Image) -> bool:
    palette = img.getpalette()
    if not palette:
        return False
    rgb = np.asarray(palette, dtype=np.int32).reshape(-1, 3)
    return bool((rgb == rgb[:, :1]).all())


def load_image(path: str | Path, size: int) -> np.ndarray:
    """Read any image file as RGB uint8 [size, size, 3] (non-square images are stretched)."""
    path = Path(path)
    with _open(path, size, "image") as img:
        out = _to_gray_or_rgb(img)
        if out.size != (size, size):
            out = out.resize((size, size), _RESAMPLE, reducing_gap=_REDUCING_GAP)
        arr = np.asarray(out, dtype=np.uint8)
    if arr.ndim == 2:  # grey resized first: 3x less work than resizing RGB
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    return arr


def load_mask(path: str | Path | None, size: int) -> np.ndarray:
    """Read a ground-truth mask as bool [size, size]; None (no mask) gives all False.

    Masks are binarised at half their peak value (255 -> > 127.5, robust to JPEG noise; 0/1 label
    masks -> > 0), then resized nearest-neighbour so they stay binary.
    """
    if path is None:
        return np.zeros((size, size), dtype=bool)
    path = Path(path)
    with _open(path, size, "mask") as img:
        # Raw values for single-channel modes so 16-bit 0/1 label masks are not rounded to 0.
        single = img.mode in ("1", "L", "F") or img.mode.startswith("I")
        values = np.asarray(img if single else img.convert("L")).astype(np.float64)
    peak = values.max(initial=0.0)
    binary = values > (peak / 2 if peak > 1 else 0)
    if binary.shape != (size, size):
        resized = Image.fromarray(binary).resize((size, size), Image.Resampling.NEAREST)
        binary = np.asarray(resized, dtype=bool)
    return binary
