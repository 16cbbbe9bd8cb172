"""Pose normalisation: any angle and position of a screw-like object comes out upright and centred."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from kornia.geometry.transform import get_rotation_matrix2d, warp_affine

from ae_lab.data import pose
from ae_lab.data.datamodule import MVTecDataModule


def _screw(size: int = 96) -> torch.Tensor:
    """A dark 'screw' on a light plate [1,3,S,S]: a wide head at the top, a long thin shank."""
    img = torch.full((1, 3, size, size), 0.8)
    c = size // 2
    img[..., c - 34 : c - 26, c - 10 : c + 10] = 0.25  # head
    img[..., c - 26 : c + 30, c - 3 : c + 3] = 0.3  # shank
    return img


def _turn(img: torch.Tensor, degrees: float, shift: tuple[float, float]) -> torch.Tensor:
    size = img.shape[-1]
    centre = torch.tensor([[(size - 1) / 2, (size - 1) / 2]])
    m = get_rotation_matrix2d(centre, torch.tensor([degrees]), torch.ones(1, 2))
    m[:, 0, 2] += shift[0]
    m[:, 1, 2] += shift[1]
    return warp_affine(img, m, (size, size), padding_mode="border")


@pytest.mark.parametrize("degrees", [0.0, 37.0, 90.0, 155.0, 180.0, -120.0])
def test_any_angle_and_shift_comes_out_upright_and_centred(degrees: float) -> None:
    upright = _screw()
    turned = _turn(upright, degrees, shift=(7.0, -5.0))
    aligned = pose.warp(turned, pose.pose_matrices(turned))
    reference = pose.warp(upright, pose.pose_matrices(upright))
    # Same picture up to interpolation blur at the edges of the parts.
    assert (aligned - reference).abs().mean() < 0.02
    dark = aligned[0, 0] < 0.55
    rows = torch.nonzero(dark)[:, 0].float()
    cols = torch.nonzero(dark)[:, 1].float()
    assert (
        abs(cols.mean().item() - 47.5) < 2
        and (rows.max() - rows.min()) > 4 * (cols.max() - cols.min()) / 2
    )  # vertical
    head_row = torch.nonzero(dark.sum(dim=1) > 12)[:, 0].float().mean()
    assert head_row < rows.mean()  # the wide (heavy) end is at the top


def test_masks_follow_their_images_and_empty_images_stay() -> None:
    img = _turn(_screw(), 63.0, shift=(4.0, 9.0))
    mask = (img[:, 0] < 0.5).clone()  # the object itself as a 'defect mask'
    flat = torch.full((1, 3, 96, 96), 0.7)
    images = (torch.cat([img, flat]) * 255).round().to(torch.uint8)
    masks = torch.cat([mask, torch.zeros(1, 96, 96, dtype=torch.bool)])
    out_img, out_mask = pose.align_uint8(images, masks)
    dark = out_img[0, 0] < 128
    overlap = (dark & out_mask[0]).sum() / (dark | out_mask[0]).sum()
    assert overlap > 0.8
    assert torch.equal(out_img[1], images[1]) and not out_mask[1].any()


def test_datamodule_aligns_only_the_named_categories(synthetic_root: Path, tmp_path: Path) -> None:
    kwargs = dict(root=synthetic_root, categories=["cable", "screw"], image_size=64)
    plain = MVTecDataModule(**kwargs, cache_dir=tmp_path)
    aligned = MVTecDataModule(**kwargs, cache_dir=tmp_path, align=["screw*"])
    a, b = plain.dataset("test"), aligned.dataset("test")
    is_screw = np.array(a.category) == "screw"
    assert np.array_equal(a.images[~is_screw], b.images[~is_screw])
    assert not np.array_equal(a.images[is_screw], b.images[is_screw])
    # The synthetic screw lies horizontally; aligned, its dark pixels span rows, not columns.
    grey = b.images[is_screw].mean(axis=1)
    dark = grey < np.median(grey, axis=(1, 2), keepdims=True) - 25
    rows = dark.any(axis=2).sum(axis=1)
    cols = dark.any(axis=1).sum(axis=1)
    assert np.median(rows) > 2 * np.median(cols)
    # Every one with its head (the widest part) up, despite the plate's texture.
    width = dark.sum(axis=2)  # [N, rows]
    widest = width.argmax(axis=1)
    middle = np.array([np.nonzero(w)[0].mean() for w in width])
    assert (widest < middle).all(), (widest, middle)


@pytest.mark.parametrize("degrees", [-12.0, 0.0, 8.0, 20.0])
def test_straighten_undoes_a_tilt_without_turning_the_object_over(degrees: float) -> None:
    # A horizontal 'capsule' photographed in one pose: dark left half, light right half.
    img = torch.full((1, 3, 96, 96), 0.85)
    img[..., 40:56, 18:48] = 0.15
    img[..., 40:56, 48:78] = 0.6
    tilted = _turn(img, degrees, shift=(6.0, -4.0))
    out = pose.warp(tilted, pose.pose_matrices(tilted, any_angle=False))
    reference = pose.warp(img, pose.pose_matrices(img, any_angle=False))
    assert (out - reference).abs().mean() < 0.02
    # Still horizontal with the dark half on the left: no quarter or half turn.
    dark = out[0, 0] < 0.3
    cols = torch.nonzero(dark)[:, 1].float()
    assert cols.mean() < 47.5 and (cols.max() - cols.min()) > 25
    # The full-turn mode would stand it upright instead.
    full = pose.warp(tilted, pose.pose_matrices(tilted))
    rows = torch.nonzero(full[0, 0] < 0.3)[:, 0].float()
    assert (rows.max() - rows.min()) > 25


def test_datamodule_straightens_and_aligns_the_named_categories(
    synthetic_root: Path, tmp_path: Path
) -> None:
    kwargs = dict(root=synthetic_root, categories=["cable", "screw"], image_size=64)
    full = MVTecDataModule(**kwargs, cache_dir=tmp_path, align=["screw*"]).dataset("test")
    tilt = MVTecDataModule(**kwargs, cache_dir=tmp_path, straighten=["screw*"]).dataset("test")
    both = MVTecDataModule(**kwargs, cache_dir=tmp_path, align="screw", straighten="screw")
    is_screw = np.array(full.category) == "screw"
    assert not np.array_equal(full.images[is_screw], tilt.images[is_screw])
    assert np.array_equal(full.images, both.dataset("test").images)  # align wins
    # The synthetic screw lies roughly horizontal: straightened, it stays horizontal.
    grey = tilt.images[is_screw].mean(axis=1)
    dark = grey < np.median(grey, axis=(1, 2), keepdims=True) - 25
    rows = dark.any(axis=2).sum(axis=1)
    cols = dark.any(axis=1).sum(axis=1)
    assert np.median(cols) > 2 * np.median(rows)
