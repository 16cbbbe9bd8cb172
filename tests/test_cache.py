"""Decoding images and masks into fixed-size arrays, and the on-disk decode cache."""

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ae_lab.data import datamodule as cache
from ae_lab.data.table import load_image, load_mask, scan_mvtec
from ae_lab.errors import AeLabError
from tests.conftest import TINY_CATEGORIES

S = 16


def test_odd_files_become_rgb_uint8(tiny_mvtec: Path) -> None:
    widget, screw = tiny_mvtec / "widget/train/good", tiny_mvtec / "screw/train/good"
    assert Image.open(widget / "001.png").mode == "RGBA"
    assert Image.open(screw / "001.png").mode.startswith("I")
    assert Image.open(screw / "000.png").mode == "L"
    for path in (
        widget / "000.png",
        widget / "001.png",
        widget / "002.jpg",
        screw / "000.png",
        screw / "001.png",
    ):
        img = load_image(path, S)  # 40 x 36 sources: non-square, resized to S x S
        assert img.shape == (S, S, 3) and img.dtype == np.uint8
    for path in (screw / "000.png", screw / "001.png"):
        img = load_image(path, S)
        assert (img[..., 0] == img[..., 1]).all() and (img[..., 0] == img[..., 2]).all()
        assert 40 < img.mean() < 220  # scaled, not clipped to white


def test_conversions_keep_values(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (S, S), dtype=np.uint8)
    Image.fromarray(gray.astype(np.uint16) * 257).save(tmp_path / "deep.png")
    assert (load_image(tmp_path / "deep.png", S)[..., 0] == gray).all()
    Image.fromarray(gray.astype(np.int32) * 257).save(tmp_path / "int32.tif")  # mode "I"
    assert (load_image(tmp_path / "int32.tif", S)[..., 1] == gray).all()
    rgb = rng.integers(0, 256, (S, S, 3), dtype=np.uint8)
    rgba = np.dstack([rgb, np.zeros((S, S), np.uint8)])  # fully transparent: alpha is dropped
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    assert (load_image(tmp_path / "rgba.png", S) == rgb).all()
    Image.fromarray(rgb).convert("P").save(tmp_path / "palette.png")
    assert np.abs(load_image(tmp_path / "palette.png", S).astype(int) - rgb).mean() < 40
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=100)
    assert np.abs(load_image(tmp_path / "cmyk.jpg", S).astype(int) - rgb).mean() < 25
    Image.fromarray(gray).convert("LA").save(tmp_path / "la.png")
    assert (load_image(tmp_path / "la.png", S)[..., 2] == gray).all()


def test_resize_is_antialiased(tmp_path: Path) -> None:
    checker = (np.indices((64, 64)).sum(0) % 2 * 255).astype(np.uint8)  # 1-px checkerboard
    Image.fromarray(checker).save(tmp_path / "checker.png")
    img = load_image(tmp_path / "checker.png", 16)
    assert np.abs(img.astype(int) - 127.5).max() < 20  # averaged to grey, not aliased


def test_masks_are_binarised_and_resized(tmp_path: Path) -> None:
    assert not load_mask(None, S).any() and load_mask(None, S).shape == (S, S)
    mask = np.zeros((64, 64), np.uint8)
    mask[:32, :16] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    expected = np.zeros((S, S), bool)
    expected[: S // 2, : S // 4] = True
    out = load_mask(tmp_path / "m.png", S)
    assert out.dtype == bool and (out == expected).all()
    # JPEG-like noise around 0 and 255 is thresholded in the middle.
    noisy = np.where(mask > 0, 240, 12).astype(np.uint8)
    Image.fromarray(noisy).save(tmp_path / "noisy.png")
    assert (load_mask(tmp_path / "noisy.png", S) == expected).all()
    # Masks stored as 0/1 labels, in 8 and 16 bit.
    Image.fromarray((mask > 0).astype(np.uint8)).save(tmp_path / "label.png")
    Image.fromarray((mask > 0).astype(np.uint16)).save(tmp_path / "label16.png")
    assert (load_mask(tmp_path / "label.png", S) == expected).all()
    assert (load_mask(tmp_path / "label16.png", S) == expected).all()


def test_unreadable_files_name_the_file(tiny_mvtec: Path, tmp_path: Path) -> None:
    data = (tiny_mvtec / "widget/train/good/000.png").read_bytes()
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(AeLabError, match=r"truncated\.png") as err:
        load_image(truncated, S)
    assert "re-download" in str(err.value)
    (tmp_path / "text.png").write_text("hello")
    with pytest.raises(AeLabError, match=r"text\.png"):
        load_image(tmp_path / "text.png", S)
    with pytest.raises(AeLabError, match=r"text\.png"):
        load_mask(tmp_path / "text.png", S)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:  # issue 20
    stored = np.full((20, 40, 3), 250, np.uint8)
    stored[:, :20] = 10  # left half dark as stored; orientation 6 shows it turned 90° clockwise
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(tmp_path / "turned.jpg", exif=exif, quality=95)
    img = load_image(tmp_path / "turned.jpg", S).astype(int)
    assert img[: S // 2].mean() < 60 and img[S // 2 :].mean() > 200  # dark half on top


def test_tiny_image_is_refused_naming_the_file(tmp_path: Path) -> None:  # issue 20
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(tmp_path / "dot.png")
    with pytest.raises(AeLabError, match=r"dot\.png is 1x1 px, below the minimum of 16"):
        load_image(tmp_path / "dot.png", S)


@pytest.fixture
def tiny_copy(tiny_mvtec: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_mvtec, tmp_path / "mvtec"))


def _rows(root: Path):
    df = scan_mvtec(root, TINY_CATEGORIES)
    return df[df["split"] == "test"]


def _forbid_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args, **kwargs):
        raise AssertionError("decoded although the cache is valid")

    monkeypatch.setattr(cache, "load_image", fail)
    monkeypatch.setattr(cache, "load_mask", fail)


def test_cache_built_once_then_reused(tiny_mvtec: Path, tmp_path: Path, monkeypatch) -> None:
    rows = _rows(tiny_mvtec)
    images, masks = cache.load_or_build(rows, S, tmp_path)
    assert images.shape == (len(rows), 3, S, S) and images.dtype == np.uint8
    assert masks.shape == (len(rows), S, S) and masks.dtype == bool
    for i in (0, len(rows) - 1):
        assert (images[i] == load_image(rows["path"].iloc[i], S).transpose(2, 0, 1)).all()
    has_mask = rows["mask_path"].notna().to_numpy()
    assert masks[has_mask].any(axis=(1, 2)).all() and not masks[~has_mask].any()
    _forbid_decoding(monkeypatch)
    again, again_masks = cache.load_or_build(rows, S, tmp_path)
    assert (again == images).all() and (again_masks == masks).all()
    # A different size is a different cache.
    with pytest.raises(AssertionError, match="decoded"):
        cache.load_or_build(rows, S * 2, tmp_path)


def test_cache_rebuilt_when_sources_change(tiny_copy: Path, tmp_path: Path, monkeypatch) -> None:
    rows = _rows(tiny_copy)
    before, _ = cache.load_or_build(rows, S, tmp_path)
    first = Path(rows["path"].iloc[0])
    Image.fromarray(np.full((36, 40, 3), 255, np.uint8)).save(first)
    os.utime(first, ns=(1, 1))  # a distinct mtime even on coarse-clock filesystems
    after, _ = cache.load_or_build(rows, S, tmp_path)
    assert (after[0] == 255).all() and not (before[0] == 255).all()
    assert (after[1:] == before[1:]).all()
    # Masks are part of the key too.
    os.utime(rows["mask_path"].dropna().iloc[0], ns=(2, 2))
    _forbid_decoding(monkeypatch)
    with pytest.raises(AssertionError, match="decoded"):
        cache.load_or_build(rows, S, tmp_path)


def test_unusable_cache_folder_decodes_without_it(tiny_mvtec: Path, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    with pytest.warns(UserWarning, match="decoding without it.*AE_LAB_CACHE"):
        images, _ = cache.load_or_build(_rows(tiny_mvtec), S, tmp_path / "file" / "cache")
    assert images.shape == (len(_rows(tiny_mvtec)), 3, S, S)


def test_default_cache_folder_follows_env(tiny_mvtec: Path, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AE_LAB_CACHE", str(tmp_path / "here"))
    cache.load_or_build(_rows(tiny_mvtec), S)
    assert list((tmp_path / "here").rglob("output.pkl"))
