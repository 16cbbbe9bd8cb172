"""Pictures for W&B: image grids, heat maps and score histograms (torch/numpy/plotly only)."""

import base64
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch
from torch import Tensor

from ae_lab.metrics import defect_aurocs

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


# What each per-image column of the score table measures, for axis titles.
ERROR_AXES = {
    "score": "image anomaly score (smoothed anomaly map, reduced; conf/scoring)",
    "l1": "reconstruction error: mean absolute error (L1)",
    "l2": "reconstruction error: mean squared error (L2)",
    "ssim": "reconstruction error: 1 - mean SSIM",
    "ssim_l1": "reconstruction error: alpha * (1 - SSIM) + (1 - alpha) * L1",
}
GOOD_COLOUR = "rgb(120,120,120)"


def loss_error(scores: pd.DataFrame, loss: str, alpha: float = 0.84) -> pd.Series:
    """Each image's reconstruction error in the run's loss (`cfg.loss.name`), from the l1/l2/ssim
    columns of the score table (the loss is a per-image mean, so it is exactly this)."""
    if loss == "ssim_l1":
        return alpha * scores["ssim"] + (1 - alpha) * scores["l1"]
    if loss not in ("l1", "l2", "ssim"):
        raise ValueError(f"no per-image error column for loss {loss!r}")
    return scores[loss]


def histogram_traces(
    part: pd.DataFrame,
    column: str = "score",
    nbins: int = 30,
    prefix: str = "",
    counts: bool = True,
) -> list[go.Histogram]:
    """One class: good images first (grey), then one trace per defect type, on shared bins, each
    normalised to the fraction of its images. The legend carries the AUROC of the plotted value
    against the class's good images, and the detector's (score) AUROC when another value is shown.

    part: the score table rows of one class (`defect`, `label`, `column`, and `score`).
    counts: legend `bent (n=3, AUROC=0.917)` (W&B media), else `bent (AUROC 0.917)` (report).
    """
    lo, hi = float(part[column].min()), float(part[column].max())
    size = (hi - lo) / nbins if hi > lo else 1.0
    bins = {"start": lo, "end": hi + size, "size": size}
    aurocs = defect_aurocs(part, column).set_index("defect")["auroc"]
    score_aurocs = aurocs if column == "score" else defect_aurocs(part).set_index("defect")["auroc"]
    traces = []
    for defect in sorted(part["defect"].unique(), key=lambda d: (d != "good", d)):  # good first
        sub = part.loc[part["defect"] == defect, column]
        good = defect == "good"
        n, auc = len(sub), aurocs.get(defect)
        if good:
            name = f"{prefix}{defect}" + (f" (n={n})" if counts else "")
        elif not counts:
            name = f"{prefix}{defect} (AUROC {auc:.3f})"
        elif column == "score":
            name = f"{prefix}{defect} (n={n}, AUROC={auc:.3f})"
        else:  # the plotted error's AUROC, then the detector's, which the metric keys hold
            name = f"{prefix}{defect} (n={n}, {column} AUROC {auc:.3f}, score AUROC={score_aurocs[defect]:.3f})"
        traces.append(
            go.Histogram(
                x=sub.to_numpy(),
                name=name,
                xbins=bins,
                histnorm="probability",
                opacity=0.6,
                marker_color=GOOD_COLOUR if good else None,
            )
        )
    return traces


def error_histogram(
    scores: pd.DataFrame, category: str, nbins: int = 30, column: str = "score"
) -> go.Figure:
    """Overlaid histograms of one per-image value (`score`, or an error column) for one class:
    good vs each defect type, shared bins so shapes compare."""
    df = scores[scores["category"] == category]
    if df.empty:
        raise ValueError(f"no scores for category {category!r}")
    fig = go.Figure(histogram_traces(df, column, nbins))
    what = "image anomaly scores" if column == "score" else f"reconstruction error ({column})"
    fig.update_layout(
        barmode="overlay",
        title=f"{category}: {what}, good vs each defect type",
        xaxis_title=ERROR_AXES.get(column, column),
        yaxis_title="fraction of images",
        legend_title="test images",
    )
    return plain_figure(fig)


def error_histograms(
    scores: pd.DataFrame, nbins: int = 30, column: str = "score"
) -> dict[str, go.Figure]:
    """One `error_histogram` per class in `scores`, keyed by class name."""
    return {
        c: error_histogram(scores, c, nbins, column) for c in sorted(scores["category"].unique())
    }
