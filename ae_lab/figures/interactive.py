"""Interactive Plotly figures for W&B panels: score and error histograms, the latent t-SNE map.

Every figure goes through `plain_figure`, so W&B's Plotly panel can draw it.
"""

import base64
from typing import Any

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from ae_lab.metrics import defect_aurocs


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


def tsne_figure(
    table: pd.DataFrame, color: str = "category", symbol: str | None = None, title: str = ""
) -> go.Figure:
    """Interactive scatter of a `tsne_table`; hover shows the image path and defect type."""
    df = table.copy()
    if "label" in df:
        df["status"] = np.where(df["label"] == 1, "defective", "good")
    fig = px.scatter(
        df,
        x="x",
        y="y",
        color=color,
        symbol=symbol,
        hover_data=[c for c in ("category", "defect", "path") if c in df],
        title=title,
    )
    fig.update_traces(marker={"size": 7, "opacity": 0.8})
    fig.update_layout(xaxis_title="t-SNE 1", yaxis_title="t-SNE 2", legend_title=color)
    return plain_figure(fig)
