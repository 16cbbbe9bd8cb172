"""Plotly figures from the run frames: loss curves per architecture, score histograms, AUROC heatmap."""

import math

import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from ae_lab import keys
from ae_lab.figures.interactive import histogram_traces
from ae_lab.metrics import ALL, defect_aurocs

# Train/val loss differ in scale between loss functions; val/l1 and val/one_minus_ssim are the same for all.
CURVE_PANELS = (keys.TRAIN_LOSS, keys.VAL_LOSS, keys.VAL_L1, keys.VAL_ONE_MINUS_SSIM)
_DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")


def loss_curves(runs: pd.DataFrame, history: pd.DataFrame, model: str) -> go.Figure:
    """2x2 panels (`CURVE_PANELS`) against epoch for every run of `model`: one colour per loss
    function, one dash style per latent size; one trace per (run, panel)."""
    sub = runs[runs["model"] == model]
    losses = sorted(sub["loss"].astype(str).unique())
    dims = sorted(sub["latent_dim"].dropna().unique())
    fig = make_subplots(rows=2, cols=2, subplot_titles=CURVE_PANELS, horizontal_spacing=0.08)
    for _, run in sub.iterrows():
        h = history[history["run_id"] == run["run_id"]].sort_values(keys.EPOCH)
        colour = qualitative.Plotly[losses.index(str(run["loss"])) % len(qualitative.Plotly)]
        dash = (
            _DASHES[dims.index(run["latent_dim"]) % len(_DASHES)]
            if run["latent_dim"] in dims
            else None
        )
        for i, key in enumerate(CURVE_PANELS):
            points = h[[keys.EPOCH, key]].dropna()
            fig.add_trace(
                go.Scatter(
                    x=points[keys.EPOCH],
                    y=points[key],
                    mode="lines+markers",
                    name=f"{run['label']} ({run['loss']})",
                    legendgroup=run["label"],
                    showlegend=i == 0,
                    line={"color": colour, "dash": dash},
                ),
                row=i // 2 + 1,
                col=i % 2 + 1,
            )
    fig.update_xaxes(title_text="epoch")
    fig.update_layout(title=f"{model}: loss curves (colour = loss function)", height=650)
    return fig


def _add_class_histograms(
    fig: go.Figure, part: pd.DataFrame, row: int, col: int, prefix: str
) -> None:
    """Good scores of one class plus one overlaid histogram per defect, AUROC in the legend."""
    for trace in histogram_traces(part, "score", nbins=20, prefix=prefix, counts=False):
        fig.add_trace(trace, row=row, col=col)


def score_histograms(scores: pd.DataFrame, title: str, per_row: int = 3) -> go.Figure:
    """One run: a panel per class (`per_row` panels a row) with the image score of good images
    against each defect type."""
    cats = sorted(scores["category"].unique())
    per_class = defect_aurocs(scores)
    per_class = per_class[per_class["defect"] == ALL]
    titles = [
        f"{c} (AUROC {a:.3f})"
        for c, a in zip(per_class["category"], per_class["auroc"], strict=True)
    ]
    rows, cols = math.ceil(len(cats) / per_row), min(per_row, len(cats))
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles)
    for j, cat in enumerate(cats):
        part = scores[scores["category"] == cat]
        _add_class_histograms(fig, part, j // cols + 1, j % cols + 1, f"{cat}: ")
    fig.update_xaxes(title_text="image score")
    fig.update_yaxes(title_text="fraction of images")
    fig.update_layout(title=title, barmode="overlay", height=320 * rows + 100)
    return fig


def best_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The run with the highest `test/image_auroc` per architecture (the first run if it is missing)."""
    key = keys.TEST_IMAGE_AUROC
    ranked = runs.sort_values(key, ascending=False) if key in runs else runs
    return ranked.groupby("model", sort=True).head(1).sort_values("model")


def best_run_histograms(runs: pd.DataFrame, scores: pd.DataFrame) -> go.Figure:
    """Compact view: a column per architecture (its best run), a row per class."""
    best = best_runs(runs)
    cats = sorted(scores["category"].unique())
    titles = [f"{r['label']}: {c}" for c in cats for _, r in best.iterrows()]
    fig = make_subplots(rows=len(cats), cols=len(best), subplot_titles=titles)
    for j, (_, run) in enumerate(best.iterrows()):
        sc = scores[scores["run_id"] == run["run_id"]]
        for i, cat in enumerate(cats):
            part = sc[sc["category"] == cat]
            _add_class_histograms(fig, part, i + 1, j + 1, f"{run['model']} {cat}: ")
    fig.update_layout(
        title="Best run per architecture: image score, good vs defect types",
        barmode="overlay",
        height=260 * len(cats) + 120,
    )
    return fig


def auroc_heatmap(table: pd.DataFrame) -> go.Figure:
    """The AUROC table (rows class/defect, columns runs) as a heatmap with the values written in."""
    values = table.drop(columns=["best_run"], errors="ignore")
    rows = [f"{c} / {d}" for c, d in values.index]
    fig = go.Figure(
        go.Heatmap(
            z=values.values,
            x=list(values.columns),
            y=rows,
            zmin=0.5,
            zmax=1.0,
            colorscale="Viridis",
            text=values.round(3).values,
            texttemplate="%{text}",
            colorbar={"title": "AUROC"},
        )
    )
    fig.update_yaxes(autorange="reversed")
    fig.update_layout(title="Image AUROC per class and defect", height=200 + 28 * len(rows))
    return fig
