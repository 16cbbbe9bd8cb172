"""Images as uint8 arrays for W&B and the notebook: grids, reconstruction pairs, anomaly strips."""

import numpy as np
import torch
from matplotlib import colormaps
from torch import Tensor

# Perceptually ordered (dark = normal, bright = anomalous) and readable in grayscale print.
INFERNO = colormaps["inferno"]


def to_uint8(images: Tensor) -> np.ndarray:
    """[N,C,H,W] floats in [0,1], C in {1,3} -> [N,H,W,3] uint8."""
    x = images.detach().float().cpu().clamp(0.0, 1.0).expand(-1, 3, -1, -1)  # gray -> RGB
    return (x * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def image_grid(images: np.ndarray, ncol: int, pad: int = 2, pad_value: int = 255) -> np.ndarray:
    """[N,H,W,3] uint8 -> one [rows*(H+pad)+pad, ncol*(W+pad)+pad, 3] uint8 image, row-major."""
    n, h, w, c = images.shape
    ncol = max(1, min(ncol, n))
    nrow = -(-n // ncol)
    # Each tile is an image with `pad` pixels below and to its right; the grid adds the top/left.
    tiles = np.full((nrow * ncol, h + pad, w + pad, c), pad_value, np.uint8)
    tiles[:n, :h, :w] = images
    grid = tiles.reshape(nrow, ncol, h + pad, w + pad, c).swapaxes(1, 2)
    grid = grid.reshape(nrow * (h + pad), ncol * (w + pad), c)
    return np.pad(grid, ((pad, 0), (pad, 0), (0, 0)), constant_values=pad_value)


def reconstruction_grid(
    originals: Tensor, recons: Tensor, ncol: int = 8, pad: int = 2, block_gap: int = 8
) -> np.ndarray:
    """Originals above their reconstructions, `ncol` pairs per block, blocks stacked.

    originals, recons: [N,C,H,W] in [0,1]. Returns uint8 [H',W',3]: for 16 images and ncol=8,
    rows 1 and 3 are originals and rows 2 and 4 their reconstructions (a wider white gap
    separates the two blocks).
    """
    orig, rec = to_uint8(originals), to_uint8(recons)
    width = min(ncol, len(orig))
    blank = np.full((-len(orig) % width, *orig.shape[1:]), 255, np.uint8)  # aligns the last block
    orig, rec = np.concatenate([orig, blank]), np.concatenate([rec, blank])
    blocks = [
        image_grid(np.concatenate([orig[i : i + width], rec[i : i + width]]), width, pad)
        for i in range(0, len(orig), width)
    ]
    gap = np.full((block_gap, blocks[0].shape[1], 3), 255, np.uint8)
    return np.concatenate([part for block in blocks for part in (gap, block)][1:])


def anomaly_strip(
    image: Tensor, recon: Tensor, amap: Tensor, mask: Tensor, vmax: float, pad: int = 2
) -> np.ndarray:
    """One test image as a 1x4 strip: original | reconstruction | anomaly map | ground-truth mask.

    image, recon: [3,H,W] in [0,1]; amap: [1,H,W] (any scale, shown on [0, vmax] so all strips
    share one colour scale); mask: [1,H,W] in {0,1}. Returns uint8 [H+2*pad, 4*W+5*pad, 3].
    """
    heat = (amap.detach().float().cpu()[0] / max(float(vmax), 1e-12)).clamp(0.0, 1.0)
    heat = INFERNO(heat.numpy(), bytes=True)[..., :3]
    image, recon, mask = to_uint8(torch.stack([image, recon, mask.float().expand_as(image)]))
    return image_grid(np.stack([image, recon, heat, mask]), ncol=4, pad=pad)
