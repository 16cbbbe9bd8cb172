"""Pictures for W&B: image grids, heat maps and score histograms (torch/numpy/plotly only)."""

import base64
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch
from sklearn.metrics import roc_auc_score
from torch import Tensor

# Matplotlib's 'inferno' sampled at 9 points; interpolated to a 256-entry LUT below. Perceptually
# ordered (dark = normal, bright = anomalous) and readable in grayscale print.
_INFERNO_ANCHORS = np.array(
    [
        [0, 0, 4],
        [31, 12, 72],
        [85, 15, 109],
        [136, 34, 106],
        [186, 54, 85],
        [227, 89, 51],
        [249, 140, 10],
        [249, 201, 50],
        [252, 255, 164],
    ],
    dtype=np.float64,
)
_POS = np.linspace(0.0, 1.0, len(_INFERNO_ANCHORS))
INFERNO_LUT = (
    np.stack(
        [np.interp(np.linspace(0.0, 1.0, 256), _POS, _INFERNO_ANCHORS[:, c]) for c in range(3)],
        axis=1,
    )
    .round()
    .astype(np.uint8)
)  # [256, 3]


def to_uint8(images: Tensor) -> np.ndarray:
    """[N,C,H,W] (or [C,H,W]) floats in [0,1], C in {1,3} -> [N,H,W,3] (or [H,W,3]) uint8."""
    single = images.dim() == 3
    x = images.unsqueeze(0) if single else images
    x = x.detach().float().cpu().clamp(0.0, 1.0)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    out = (x * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return out[0] if single else out


def image_grid(images: np.ndarray, ncol: int, pad: int = 2, pad_value: int = 255) -> np.ndarray:
    """[N,H,W,3] uint8 -> one [rows*(H+pad)+pad, ncol*(W+pad)+pad, 3] uint8 image, row-major."""
    n, h, w, c = images.shape
    ncol = max(1, min(ncol, n))
    nrow = -(-n // ncol)
    grid = np.full((nrow * (h + pad) + pad, ncol * (w + pad) + pad, c), pad_value, np.uint8)
    for i in range(n):
        r, col = divmod(i, ncol)
        y, x = pad + r * (h + pad), pad + col * (w + pad)
        grid[y : y + h, x : x + w] = images[i]
    return grid


def reconstruction_grid(
    originals: Tensor, recons: Tensor, ncol: int = 8, pad: int = 2, block_gap: int = 8
) -> np.ndarray:
    """Originals above their reconstructions, `ncol` pairs per block, blocks stacked.

    originals, recons: [N,C,H,W] in [0,1]. Returns uint8 [H',W',3]: for 16 images and ncol=8,
    rows 1 and 3 are originals and rows 2 and 4 their reconstructions (a wider white gap
    separates the two blocks).
    """
    if originals.shape != recons.shape:
        raise ValueError(f"shape mismatch: {tuple(originals.shape)} vs {tuple(recons.shape)}")
    orig, rec = to_uint8(originals), to_uint8(recons)
    blocks = []
    for start in range(0, len(orig), ncol):
        chunk = slice(start, start + ncol)
        pair_rows = np.concatenate([orig[chunk], rec[chunk]])
        width = min(ncol, len(orig))
        if len(orig[chunk]) < width:  # keep the last block aligned with the full ones
            blank = np.full((width - len(orig[chunk]), *orig.shape[1:]), 255, np.uint8)
            pair_rows = np.concatenate([orig[chunk], blank, rec[chunk], blank])
        blocks.append(image_grid(pair_rows, ncol=width, pad=pad))
    gap = np.full((block_gap, blocks[0].shape[1], 3), 255, np.uint8)
    out = [blocks[0]]
    for block in blocks[1:]:
        out += [gap, block]
    return np.concatenate(out)


def apply_colormap(values: np.ndarray, vmin: float = 0.0, vmax: float = 1.0) -> np.ndarray:
    """Any-shape float array -> same shape + [3] uint8 through the inferno LUT (clipped to [vmin, vmax])."""
    span = max(float(vmax) - float(vmin), 1e-12)
    norm = np.clip((np.asarray(values, dtype=np.float64) - vmin) / span, 0.0, 1.0)
    return INFERNO_LUT[np.round(norm * 255).astype(np.int64)]


def anomaly_strip(
    image: Tensor, recon: Tensor, amap: Tensor, mask: Tensor, vmax: float, pad: int = 2
) -> np.ndarray:
    """One test image as a 1x4 strip: original | reconstruction | anomaly map | ground-truth mask.

    image, recon: [3,H,W] in [0,1]; amap: [1,H,W] (any scale, shown on [0, vmax] so all strips
    share one colour scale); mask: [1,H,W] in {0,1}. Returns uint8 [H+2*pad, 4*W+5*pad, 3].
    """
    heat = apply_colormap(amap.detach().float().cpu().numpy()[0], 0.0, vmax)
    panels = np.stack([to_uint8(image), to_uint8(recon), heat, to_uint8(mask.float())])
    return image_grid(panels, ncol=4, pad=pad)


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        if "bdata" in obj and "dtype" in obj:
            arr = np.frombuffer(base64.b64decode(obj["bdata"]), dtype=np.dtype(obj["dtype"]))
            shape = obj.get("shape")
            if shape:
                dims = shape.split(",") if isinstance(shape, str) else shape
                arr = arr.reshape([int(d) for d in dims])
            return arr.tolist()
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _plain(obj.tolist())
    return obj


def plain_figure(fig: go.Figure) -> go.Figure:
    """The same figure with every array as a plain JSON list.

    Plotly >= 6 serialises numeric arrays as base64 typed arrays (`{"dtype", "bdata"}`), which
    W&B's Plotly panel does not decode (the chart renders empty, wandb/wandb#9563); lists do.
    """
    return go.Figure(_plain(fig.to_plotly_json()))


def auroc(good: np.ndarray, bad: np.ndarray) -> float:
    """AUROC of separating `bad` (positives) from `good` scores; NaN if either side is empty."""
    if len(good) == 0 or len(bad) == 0:
        return float("nan")
    labels = np.r_[np.zeros(len(good)), np.ones(len(bad))]
    return float(roc_auc_score(labels, np.r_[good, bad]))


def error_histogram(scores: pd.DataFrame, category: str, nbins: int = 30) -> go.Figure:
    """Overlaid histograms of image scores for one class: good vs each defect type.

    scores: the per-image table (columns `category`, `defect`, `label`, `score`). Each defect's
    legend entry carries its AUROC against the class's good images. Shared bins so shapes compare.
    """
    df = scores[scores["category"] == category]
    if df.empty:
        raise ValueError(f"no scores for category {category!r}")
    lo, hi = float(df["score"].min()), float(df["score"].max())
    size = (hi - lo) / nbins if hi > lo else 1.0
    bins = {"start": lo, "end": hi + size, "size": size}
    good = df.loc[df["label"] == 0, "score"].to_numpy()
    fig = go.Figure()
    fig.add_trace(go.Histogram(x=good, name=f"good (n={len(good)})", xbins=bins))
    for defect in sorted(df.loc[df["label"] == 1, "defect"].unique()):
        bad = df.loc[(df["label"] == 1) & (df["defect"] == defect), "score"].to_numpy()
        name = f"{defect} (n={len(bad)}, AUROC={auroc(good, bad):.3f})"
        fig.add_trace(go.Histogram(x=bad, name=name, xbins=bins))
    fig.update_traces(opacity=0.6, histnorm="probability")
    fig.update_layout(
        barmode="overlay",
        title=f"{category}: image anomaly scores, good vs each defect type",
        xaxis_title="image score",
        yaxis_title="fraction of images",
        legend_title="test images",
    )
    return plain_figure(fig)


def error_histograms(scores: pd.DataFrame, nbins: int = 30) -> dict[str, go.Figure]:
    """One `error_histogram` per class in `scores`, keyed by class name."""
    return {c: error_histogram(scores, c, nbins) for c in sorted(scores["category"].unique())}
