"""Camera simulation (lighting jitter, sensor noise) and the non-defect nuisances.

Nuisances are things real inspection images have that are NOT defects; a good detector must not
flag them. Each is given to a fixed share of the files (at least one file per split where it
applies) so that the analysis can check scores on them. See `KINDS` for what each one does.
"""

from pathlib import Path

import numpy as np
from PIL import Image

KINDS = {
    "illumination": "test only (good and defective): global brightness x0.72-0.82 or x1.18-1.30 "
    "plus a linear light gradient of 8-15% across the image",
    "pose": "test only (good and defective): shift of 10-16 px (at 256 px) and rotation of 6-10 "
    "degrees, versus at most 4 px and 3 degrees for the natural variation",
    "jpeg": "saved as .jpg (quality 90) instead of .png; its mask is still <stem>_mask.png",
    "grayscale": "colour categories only: saved as a single-channel 'L' image",
    "rgba": "colour categories only: saved as an RGBA PNG (alpha 255 everywhere)",
    "odd_size": "saved at (image_size + 13) x image_size px (width x height), its mask too",
}
RATES = dict(illumination=0.08, pose=0.08, jpeg=0.04, grayscale=0.02, rgba=0.02, odd_size=0.02)
SCENE_KINDS = ("illumination", "pose")  # change the picture: drawn per test subset
FILE_KINDS = ("jpeg", "grayscale", "rgba", "odd_size")  # change the file: mutually exclusive
ODD_EXTRA = 13


def _count(kind: str, n: int) -> int:
    return 0 if n == 0 else min(n, max(1, round(RATES[kind] * n)))


def assign(
    rng: np.random.Generator, n_train: int, n_good: int, n_defective: int, design
) -> tuple[list[set[str]], list[set[str]]]:
    """Nuisance kinds of each train image and each test image (test order: good, then defective);
    grayscale designs get no grayscale/rgba files."""
    file_kinds = [k for k in FILE_KINDS if not design.grayscale or k not in ("grayscale", "rgba")]

    def file_nuisances(n: int) -> list[set[str]]:
        out: list[set[str]] = [set() for _ in range(n)]
        order, start = rng.permutation(n), 0
        for kind in file_kinds:
            k = _count(kind, n)
            for i in order[start : start + k]:
                out[i].add(kind)
            start += k
        return out

    train = file_nuisances(n_train)
    test = file_nuisances(n_good + n_defective)
    for kind in SCENE_KINDS:
        for lo, n in ((0, n_good), (n_good, n_defective)):
            for i in rng.choice(n, _count(kind, n), replace=False):
                test[lo + int(i)].add(kind)
    return train, test


def pose(rng: np.random.Generator, large: bool) -> tuple[tuple[float, float], float]:
    """(shift in normalised units, rotation in radians) of one image."""
    unit = 2.0 / 256  # one pixel at 256 px, so poses scale with the image
    if large:
        r, a = rng.uniform(10, 16) * unit, rng.uniform(0, 2 * np.pi)
        shift = (r * np.cos(a), r * np.sin(a))
        angle = np.deg2rad(rng.uniform(6, 10)) * rng.choice([-1, 1])
    else:
        shift = tuple(rng.uniform(-4, 4, 2) * unit)
        angle = np.deg2rad(rng.uniform(-3, 3))
    return (float(shift[0]), float(shift[1])), float(angle)


def photograph(img: np.ndarray, rng: np.random.Generator, illumination: bool) -> np.ndarray:
    """[H, W, C] float render -> [H, W, C] uint8 with lighting jitter and sensor noise."""
    h, w, ch = img.shape
    gain = rng.uniform(0.97, 1.03, ch) * rng.uniform(0.95, 1.05)
    img = img * gain.astype(np.float32) + np.float32(rng.uniform(-0.015, 0.015))
    if illumination:
        level = rng.uniform(0.72, 0.82) if rng.random() < 0.5 else rng.uniform(1.18, 1.3)
        a, g = rng.uniform(0, 2 * np.pi), rng.uniform(0.08, 0.15)
        x = np.linspace(-1, 1, w, dtype=np.float32)[None, :]
        y = np.linspace(-1, 1, h, dtype=np.float32)[:, None]
        img = img * (np.float32(level) * (1 + g * (np.cos(a) * x + np.sin(a) * y)))[..., None]
    img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(rng.uniform(0.006, 0.014))
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def save(stem: Path, img: np.ndarray, mask: np.ndarray | None, mask_path: Path, kinds: set[str]):
    """Write image `stem`.png/.jpg (and `mask_path` when there is a mask) applying the file
    nuisances; returns the image path. `img`: [H, W, C] uint8 (C = 1 or 3); `mask`: [H, W] bool."""
    image = Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img)
    if "grayscale" in kinds or "rgba" in kinds:
        image = image.convert("L" if "grayscale" in kinds else "RGBA")
    odd_size = (image.width + ODD_EXTRA, image.height) if "odd_size" in kinds else None
    if odd_size:
        image = image.resize(odd_size, Image.Resampling.BILINEAR)
    path = stem.with_suffix(".jpg" if "jpeg" in kinds else ".png")
    image.save(path, **({"quality": 90} if "jpeg" in kinds else {"compress_level": 1}))
    if mask is not None:
        m = Image.fromarray(mask.astype(np.uint8) * 255)
        (m.resize(odd_size, Image.Resampling.NEAREST) if odd_size else m).save(mask_path)
    return path
