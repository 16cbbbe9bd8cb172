"""ae_lab.images: tensors to uint8 images, grids, and the anomaly strips of the W&B media."""

import numpy as np
import torch

from ae_lab.images import INFERNO, anomaly_strip, image_grid, reconstruction_grid, to_uint8

INFERNO_LUT = INFERNO(np.arange(256), bytes=True)[:, :3]  # [256, 3] uint8


def test_to_uint8_range_layout_and_gray():
    x = torch.tensor([-0.5, 0.0, 0.5, 1.0, 2.0]).view(1, 1, 1, 5)
    out = to_uint8(x)
    assert out.shape == (1, 1, 5, 3) and out.dtype == np.uint8
    assert out[0, 0, :, 0].tolist() == [0, 0, 128, 255, 255]
    assert (out[..., 0] == out[..., 2]).all()  # gray expanded to RGB
    rgb = torch.zeros(1, 3, 4, 6)
    rgb[:, 1] = 1.0
    assert to_uint8(rgb).shape == (1, 4, 6, 3) and to_uint8(rgb)[0, 0, 0].tolist() == [0, 255, 0]


def test_image_grid_places_images_row_major():
    imgs = np.stack([np.full((4, 5, 3), i * 10, np.uint8) for i in range(5)])
    grid = image_grid(imgs, ncol=3, pad=1)
    assert grid.shape == (2 * 5 + 1, 3 * 6 + 1, 3)
    assert grid[1, 1, 0] == 0 and grid[1, 1 + 6 * 2, 0] == 20  # row 0: images 0, 1, 2
    assert grid[1 + 5, 1 + 6, 0] == 40  # row 1, column 1: image 4
    assert grid[0, 0, 0] == 255 and grid[-1, -1, 0] == 255  # padding; empty cell stays white


def test_reconstruction_grid_originals_above_reconstructions():
    n, h, w = 16, 8, 6
    originals = torch.zeros(n, 3, h, w)
    recons = torch.ones(n, 3, h, w)
    grid = reconstruction_grid(originals, recons, ncol=8, pad=2, block_gap=8)
    block_h = 2 * (h + 2) + 2
    assert grid.shape == (2 * block_h + 8, 8 * (w + 2) + 2, 3)
    for block in range(2):
        top = block * (block_h + 8)
        assert (grid[top + 2 : top + 2 + h, 2 : 2 + w] == 0).all()  # original row: black
        row2 = top + 2 + h + 2
        assert (grid[row2 : row2 + h, 2 : 2 + w] == 255).all()  # reconstruction row: white


def test_reconstruction_grid_with_a_partial_last_block():
    grid = reconstruction_grid(torch.zeros(5, 3, 4, 4), torch.zeros(5, 3, 4, 4), ncol=4, pad=1)
    block_h = 2 * 5 + 1
    assert grid.shape == (2 * block_h + 8, 4 * 5 + 1, 3)


def test_anomaly_strip_has_four_panels_with_shared_scale():
    """The map goes through inferno (dark to bright) on [0, vmax], clipped outside."""
    assert INFERNO_LUT.shape == (256, 3) and INFERNO_LUT.dtype == np.uint8
    luminance = INFERNO_LUT.astype(float) @ np.array([0.299, 0.587, 0.114])
    assert (np.diff(luminance) > -1.0).all() and luminance[-1] - luminance[0] > 200
    h, w = 10, 12
    amap = torch.zeros(1, h, w)
    amap[0, :5] = 2.0
    amap[0, 5] = 9.0  # above vmax: as bright as vmax
    amap[0, 6] = 1.0  # half of vmax
    amap[0, 7] = -1.0  # below 0: as dark as 0
    mask = torch.zeros(1, h, w)
    mask[0, :, :3] = 1.0
    strip = anomaly_strip(torch.rand(3, h, w), torch.rand(3, h, w), amap, mask, vmax=2.0, pad=2)
    assert strip.shape == (h + 4, 4 * (w + 2) + 2, 3) and strip.dtype == np.uint8
    heat_x, mask_x = 2 + 2 * (w + 2), 2 + 3 * (w + 2)
    assert strip[2, heat_x].tolist() == INFERNO_LUT[255].tolist()
    assert strip[2 + h - 1, heat_x].tolist() == INFERNO_LUT[0].tolist()
    assert strip[2 + 5, heat_x].tolist() == INFERNO_LUT[255].tolist()
    assert strip[2 + 6, heat_x].tolist() == INFERNO_LUT[128].tolist()
    assert strip[2 + 7, heat_x].tolist() == INFERNO_LUT[0].tolist()
    assert strip[2, mask_x].tolist() == [255, 255, 255] and strip[2, mask_x + 5].tolist() == [
        0,
        0,
        0,
    ]
