"""Shared fixtures: a tiny hand-written MVTec tree, the synthetic set, and an offline W&B env."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

TINY_CATEGORIES = ["widget", "screw"]
TINY_DEFECTS = {"widget": ("scratch", "crack"), "screw": ("thread_side", "bent")}
TINY_N_TRAIN = 8
TINY_N_TEST_GOOD = 3
TINY_N_PER_DEFECT = 2


def _base_image(rng: np.random.Generator, h: int, w: int, channels: int) -> np.ndarray:
    """A smooth gradient plus mild noise: structured enough for an autoencoder to learn."""
    yy, xx = np.mgrid[0:h, 0:w]
    base = 90 + 60 * np.sin(xx / w * 3.1) + 40 * np.cos(yy / h * 2.3)
    img = base[..., None] + rng.normal(0, 6, (h, w, channels)) + rng.integers(-10, 10, channels)
    return np.clip(img, 0, 255).astype(np.uint8)


def _defect(rng: np.random.Generator, img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h, w = img.shape[:2]
    mask = np.zeros((h, w), dtype=np.uint8)
    y, x = rng.integers(2, h // 2), rng.integers(2, w // 2)
    mask[y : y + h // 4, x : x + w // 4] = 255
    img = img.copy()
    img[mask > 0] = 250
    return img, mask


def _save(arr: np.ndarray, path: Path, gray: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr[..., 0] if gray else arr).save(path)


def write_tiny_mvtec(
    root: Path,
    n_train: int = TINY_N_TRAIN,
    n_test_good: int = TINY_N_TEST_GOOD,
    n_per_defect: int = TINY_N_PER_DEFECT,
    height: int = 36,
    width: int = 40,
    seed: int = 0,
) -> Path:
    """Write an MVTec-layout tree: `widget` (RGB) and `screw` (grayscale "L") with two defect
    types each and `<stem>_mask.png` masks. Odd files on purpose: widget train 001 is RGBA, 002 a
    JPEG; screw train 001 is a 16-bit ("I;16") PNG. Images are non-square (height x width)."""
    rng = np.random.default_rng(seed)
    for category in TINY_CATEGORIES:
        gray = category == "screw"
        channels = 1 if gray else 3
        cat = root / category
        for i in range(n_train):
            _save(
                _base_image(rng, height, width, channels), cat / "train/good" / f"{i:03d}.png", gray
            )
        for i in range(n_test_good):
            _save(
                _base_image(rng, height, width, channels), cat / "test/good" / f"{i:03d}.png", gray
            )
        for defect in TINY_DEFECTS[category]:
            for i in range(n_per_defect):
                img, mask = _defect(rng, _base_image(rng, height, width, channels))
                _save(img, cat / "test" / defect / f"{i:03d}.png", gray)
                gt = cat / "ground_truth" / defect / f"{i:03d}_mask.png"
                gt.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(mask).save(gt)
    if n_train >= 3:
        widget, screw = root / "widget/train/good", root / "screw/train/good"
        rgba = np.dstack(
            [_base_image(rng, height, width, 3), np.full((height, width), 200, np.uint8)]
        )
        Image.fromarray(rgba).save(widget / "001.png")
        (widget / "002.png").unlink()
        Image.fromarray(_base_image(rng, height, width, 3)).save(widget / "002.jpg", quality=95)
        deep = _base_image(rng, height, width, 1)[..., 0].astype(np.uint16) * 257
        Image.fromarray(deep).save(screw / "001.png")
    return root


@pytest.fixture(scope="session")
def tiny_mvtec(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Root of a tiny MVTec-layout tree with categories `["widget", "screw"]` (read-only!)."""
    return write_tiny_mvtec(tmp_path_factory.mktemp("tiny_mvtec"))


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small generated synthetic MVTec set with categories cable and screw, 64 px."""
    from ae_lab.data.synthetic import generate

    out = tmp_path_factory.mktemp("synthetic_mvtec")
    return generate(out, categories=("cable", "screw"), n_train=12, n_test=8, seed=0, image_size=64)


@pytest.fixture(scope="session", autouse=True)
def _offline_env(tmp_path_factory: pytest.TempPathFactory):
    """W&B offline and silent into a temp folder; decode caches in a temp folder."""
    values = {
        "WANDB_MODE": "offline",
        "WANDB_DIR": str(tmp_path_factory.mktemp("wandb")),
        "WANDB_SILENT": "true",
        "AE_LAB_CACHE": str(tmp_path_factory.mktemp("ae_lab_cache")),
    }
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    yield
    for key, old in saved.items():
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old


# The longest modules first (pytest --durations): `make test`'s two xdist workers take tests in
# collection order, so the notebook's run starts at once instead of near the end, alone.
LONGEST_FIRST = (
    "tests/test_notebook.py",
    "tests/faults/test_grid.py",
    "tests/faults/test_run_faults.py",
    "tests/test_sweeps.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> tuple[int, bool]:
        path = item.nodeid.split("::")[0]
        first = LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)
        return first, item.get_closest_marker("slow") is None

    items.sort(key=rank)
