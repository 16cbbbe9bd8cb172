"""Every figure a run, the analysis and the notebook draw, one function each.

Plotly (interactive W&B panels): `error_histograms`, `tsne_figure`, `histogram_grid`; each goes
through `plain_figure` so W&B's Plotly panel can draw it. Matplotlib (W&B images, the notebook,
the HTML report; labels in Spanish, the hand-in's language): `loss_curves`,
`loss_curves_comparison`, `defect_histograms`, `loss_histograms`, `tsne_scatter`,
`reconstruction_comparison`, `image_montage`, `auroc_heatmap`. Figures use the object-oriented
API (`Figure`, no pyplot).
"""

import io
import json
import math

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from plotly.subplots import make_subplots
from plotly.utils import PlotlyJSONEncoder

from ae_lab import keys
from ae_lab.metrics import ALL, defect_aurocs

LOSS_COLOURS = {"l1": "tab:blue", "l2": "tab:orange", "ssim": "tab:green", "ssim_l1": "tab:red"}
LOSS_NAMES = {"l1": "L1", "l2": "L2", "ssim": "SSIM", "ssim_l1": "SSIM+L1"}
# Architectures in colours the losses do not use, so that no figure reads one as the other.
MODEL_COLOURS = ("tab:purple", "tab:brown", "tab:olive", "tab:cyan", "tab:pink")
GOOD_GREY = ("rgb(120,120,120)", "0.55")  # plotly, matplotlib
DPI = 110


# ---- Plotly -------------------------------------------------------------------------------------
def plain_figure(fig: go.Figure) -> go.Figure:
    """The same figure with every array as a plain JSON list: plotly >= 6 writes base64 typed
    arrays (`{"dtype", "bdata"}`), which W&B's Plotly panel draws empty (wandb/wandb#9563)."""
    # The traces' and the layout's own `to_plotly_json` keep numpy arrays (only the figure's
    # encodes them), and plotly's JSON encoder writes those as lists.
    plain = json.dumps({"data": fig.data, "layout": fig.layout}, cls=PlotlyJSONEncoder)
    return go.Figure(json.loads(plain))


def histogram_traces(
    part: pd.DataFrame, column: str = "score", nbins: int = 30, prefix: str = ""
) -> list[go.Histogram]:
    """One class: good images (grey) then one trace per defect type, on shared bins, each as the
    fraction of its images; the legend gives n and the AUROC of `column` against the good images."""
    lo, hi = float(part[column].min()), float(part[column].max())
    size = (hi - lo) / nbins if hi > lo else 1.0
    aurocs = defect_aurocs(part, column).set_index("defect")["auroc"]
    traces = []
    for defect in sorted(part["defect"].unique(), key=lambda d: (d != "good", d)):
        values = part.loc[part["defect"] == defect, column]
        auroc = "" if defect == "good" else f", AUROC={aurocs[defect]:.3f}"
        traces.append(
            go.Histogram(
                x=values.to_numpy(),
                name=f"{prefix}{defect} (n={len(values)}{auroc})",
                xbins={"start": lo, "end": hi + size, "size": size},
                histnorm="probability",
                opacity=0.6,
                marker_color=GOOD_GREY[0] if defect == "good" else None,
            )
        )
    return traces


def error_histograms(scores: pd.DataFrame, column: str = "score") -> dict[str, go.Figure]:
    """Per class: overlaid histograms of one per-image value, good vs each defect type."""
    what = "image anomaly score" if column == "score" else "reconstruction error in the run's loss"
    figs = {}
    for cat, part in scores.groupby("category", sort=True):
        fig = go.Figure(histogram_traces(part, column))
        fig.update_layout(
            barmode="overlay",
            title=f"{cat}: {what}, good vs each defect type",
            xaxis_title=what,
            yaxis_title="fraction of images",
            legend_title="test images",
        )
        figs[cat] = plain_figure(fig)
    return figs


def histogram_grid(runs: pd.DataFrame, scores: pd.DataFrame, title: str) -> go.Figure:
    """Image score histograms: a column per run (`runs` rows), a row per class."""
    cats = sorted(scores["category"].unique())
    titles = [f"{r['label']}: {c}" for c in cats for _, r in runs.iterrows()]
    fig = make_subplots(rows=len(cats), cols=len(runs), subplot_titles=titles)
    for j, (run_id, label) in enumerate(zip(runs["run_id"], runs["label"], strict=True)):
        for i, cat in enumerate(cats):
            part = scores[(scores["run_id"] == run_id) & (scores["category"] == cat)]
            traces = histogram_traces(part, nbins=20, prefix=f"{label} {cat}: ")
            fig.add_traces(traces, rows=i + 1, cols=j + 1)
    fig.update_layout(title=title, barmode="overlay", height=260 * len(cats) + 120)
    return plain_figure(fig)


def tsne_figure(
    table: pd.DataFrame, color: str = "category", symbol: str | None = None, title: str = ""
) -> go.Figure:
    """Interactive scatter of a `tsne_table`; hover shows the image path and defect type."""
    df = table.assign(status=np.where(table["label"] == 1, "defective", "good"))
    hover = ["category", "defect", "path"]
    fig = px.scatter(df, x="x", y="y", color=color, symbol=symbol, hover_data=hover, title=title)
    fig.update_traces(marker={"size": 7, "opacity": 0.8})
    fig.update_layout(xaxis_title="t-SNE 1", yaxis_title="t-SNE 2", legend_title=color)
    return plain_figure(fig)


def plural(n: int, one: str, many: str | None = None) -> str:
    """`1 pérdida`, `4 pérdidas`: figure titles count what they show."""
    return f"{n} {one if n == 1 else many or one + 's'}"


# ---- Matplotlib ---------------------------------------------------------------------------------
def loss_name(loss: str) -> str:
    """`ssim_l1` -> `SSIM+L1`, as figure text writes a loss function."""
    return LOSS_NAMES.get(str(loss), str(loss))


def _train_val(ax, history: pd.DataFrame, colour: str, name: str) -> None:
    """One run's `train/loss` (solid) and `val/loss` (dashed) against the epoch."""
    for key, style, what in ((keys.TRAIN_LOSS, "-", "entren."), (keys.VAL_LOSS, "--", "val.")):
        pts = history[[keys.EPOCH, key]].dropna()
        label = f"{name} ({what})"
        ax.plot(pts[keys.EPOCH], pts[key], style, color=colour, marker=".", label=label)


def _epoch_axis(ax) -> None:
    """Whole epochs on x; a log y axis, as the runs' losses and final errors differ tenfold (and
    each loss has its own scale)."""
    ax.set(xlabel="época", yscale="log")
    ax.grid(alpha=0.3)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def loss_curves(runs: pd.DataFrame, history: pd.DataFrame, model: str) -> Figure:
    """One architecture: left, `train/loss` (solid) and `val/loss` (dashed) of each loss function
    on a log axis (each loss has its own scale); right, `val/l1`, the same error for every run."""
    fig = Figure(figsize=(11, 4.2), dpi=DPI, layout="constrained")
    left, right = fig.subplots(1, 2)
    mine = runs[runs["model"] == model].sort_values("loss")
    for _, run in mine.iterrows():
        h = history[history["run_id"] == run["run_id"]].sort_values(keys.EPOCH)
        colour = LOSS_COLOURS.get(str(run["loss"]))
        _train_val(left, h, colour, run["loss"])
        pts = h[[keys.EPOCH, keys.VAL_L1]].dropna()
        right.plot(pts[keys.EPOCH], pts[keys.VAL_L1], color=colour, marker=".", label=run["loss"])
    n_losses = mine["loss"].nunique()
    for ax in (left, right):
        _epoch_axis(ax)
    left.set_title("Pérdida de entrenamiento (continua) y validación (discontinua)")
    left.set_ylabel("pérdida (escala de cada función, log)")
    right.set_title(f"val/l1: el mismo error para {plural(n_losses, 'pérdida')}")
    right.set_ylabel("error L1 medio de validación (log)")
    left.legend(fontsize=8, ncol=2)
    right.legend(fontsize=8, title="pérdida")
    fig.suptitle(
        f"Arquitectura {model}: curvas de {plural(n_losses, 'función', 'funciones')} de pérdida"
    )
    return fig


def loss_curves_comparison(runs: pd.DataFrame, history: pd.DataFrame) -> Figure:
    """Every architecture on the same axes: a panel per loss function, `train/loss` (solid) and
    `val/loss` (dashed) of each architecture's runs with that loss, on a log axis (the final
    values of two architectures differ tenfold)."""
    losses, models = sorted(runs["loss"].dropna().unique()), sorted(runs["model"].unique())
    fig = Figure(figsize=(3.4 * len(losses) + 0.8, 3.9), dpi=DPI, layout="constrained")
    axes = fig.subplots(1, len(losses), squeeze=False)[0]
    for ax, loss in zip(axes, losses, strict=True):
        for i, model in enumerate(models):
            for run_id in runs.loc[(runs["model"] == model) & (runs["loss"] == loss), "run_id"]:
                h = history[history["run_id"] == run_id].sort_values(keys.EPOCH)
                _train_val(ax, h, MODEL_COLOURS[i % len(MODEL_COLOURS)], model)
        _epoch_axis(ax)
        ax.set_title(f"pérdida {loss_name(loss)}")
        ax.legend(fontsize=7, loc="upper right")
    axes[0].set_ylabel("pérdida (escala de cada función, log)")
    fig.suptitle(
        "Arquitecturas en los mismos ejes, una función de pérdida por panel: "
        "entrenamiento (continua) y validación (discontinua)"
    )
    return fig


def _good_vs_defects(axes, part: pd.DataFrame, defects: list[str], column: str) -> None:
    """One run and class, a panel per defect type: its good images (grey) against that defect
    (red) on 15 bins shared by the panels, as fractions of each group, titled with the defect's
    AUROC."""
    edges = np.histogram_bin_edges(part[column].to_numpy(), bins=15)
    aurocs = defect_aurocs(part, column).set_index("defect")["auroc"]
    good = part.loc[part["defect"] == "good", column].to_numpy()
    for ax, defect in zip(axes, defects, strict=False):
        values = part.loc[part["defect"] == defect, column].to_numpy()
        for data, colour, name in ((good, GOOD_GREY[1], "buenas"), (values, "tab:red", defect)):
            weights = np.full(len(data), 1 / max(1, len(data)))
            label = f"{name} (n={len(data)})"
            ax.hist(data, bins=edges, weights=weights, color=colour, alpha=0.6, label=label)
        ax.set_title(f"{defect}: AUROC {aurocs.get(defect, math.nan):.2f}", fontsize=10)
        ax.legend(fontsize=7, loc="upper right")


def defect_histograms(scores: pd.DataFrame, category: str) -> Figure:
    """One class: a panel per defect type (four to a row), its images (red) against the class's
    good images (grey) on the same bins, as fractions of each group; the panel title gives the
    defect's AUROC of the anomaly score."""
    axis = "puntuación de anomalía"
    part = scores[scores["category"] == category]
    defects = sorted(set(part["defect"]) - {"good"})
    cols = max(1, min(4, len(defects)))
    rows = max(1, math.ceil(len(defects) / cols))
    fig = Figure(figsize=(max(4.8, 3.2 * cols), 2.6 * rows + 0.8), dpi=DPI, layout="constrained")
    axes = fig.subplots(rows, cols, sharex=True, squeeze=False).ravel()
    _good_vs_defects(axes, part, defects, "score")
    for ax in axes[: len(defects)]:
        ax.set_xlabel(axis, fontsize=8)
        ax.set_ylabel("fracción de imágenes", fontsize=8)
    for ax in axes[len(defects) :]:
        ax.set_visible(False)
    fig.suptitle(f"{category}: {axis},\nbuenas frente a cada tipo de defecto", fontsize=10)
    return fig


def loss_histograms(scores: pd.DataFrame, runs: pd.DataFrame, category: str) -> Figure:
    """One class, a row per run (`runs`: one architecture's losses), a column per defect type:
    the run's good images (grey) against that defect (red) on bins shared by the row (each loss
    has its own scale), titled with the AUROC of `loss` (each run's per-image error in its own
    loss)."""
    part = scores[scores["category"] == category]
    defects = sorted(set(part["defect"]) - {"good"})
    size = (max(4.8, 2.7 * len(defects) + 0.9), 2.3 * len(runs) + 1.0)
    fig = Figure(figsize=size, dpi=DPI, layout="constrained")
    axes = fig.subplots(len(runs), max(1, len(defects)), squeeze=False)
    pairs = runs[["run_id", "loss"]].itertuples(index=False)
    for row, (run_id, loss) in zip(axes, pairs, strict=True):
        mine = part[part["run_id"] == run_id].dropna(subset=["loss"])
        _good_vs_defects(row, mine, defects, "loss")
        row[0].set_ylabel(f"{loss_name(loss)}\nfracción de imágenes", fontsize=9)
    for ax in axes[-1]:
        ax.set_xlabel("error de reconstrucción (pérdida)", fontsize=8)
    model = ", ".join(sorted(runs["model"].astype(str).unique()))
    fig.suptitle(
        f"Arquitectura {model}, clase {category}: error de reconstrucción de cada modelo en su "
        "propia pérdida (una fila por pérdida),\nbuenas (gris) frente a cada tipo de defecto (rojo)"
    )
    return fig


def tsne_scatter(table: pd.DataFrame, title: str) -> Figure:
    """A `tsne_table` (x, y, category) as a scatter, one colour per class."""
    fig = Figure(figsize=(6.2, 5), dpi=DPI, layout="constrained")
    ax = fig.subplots()
    for cat, part in table.groupby("category", sort=True):
        ax.scatter(part["x"], part["y"], s=12, alpha=0.7, label=f"{cat} ({len(part)})")
    ax.set(xlabel="t-SNE 1", ylabel="t-SNE 2", title=title)
    ax.legend(title="clase", fontsize=8)
    return fig


def reconstruction_comparison(
    images: np.ndarray,
    masks: np.ndarray | None,
    models: dict[str, tuple[np.ndarray, np.ndarray]],
    row_titles: list[str],
    vmax: float,
    title: str = "",
) -> Figure:
    """Test images in rows: the original, then per model its reconstruction and anomaly map, then
    (with `masks`) the ground-truth mask. images uint8 [N,H,W,3]; masks [N,H,W]; models: name ->
    (recons uint8 [N,H,W,3], maps [N,H,W]); every map on one inferno scale 0..vmax (one colour
    bar), so that the models compare."""
    heat = {"cmap": "inferno", "vmin": 0.0, "vmax": vmax}
    columns = [("original", images, {})]  # (header, arrays, imshow style)
    for name, (recons, maps) in models.items():
        columns.append((f"reconstrucción\n{name}", recons, {}))
        columns.append((f"mapa de anomalía\n{name}", maps, heat))
    if masks is not None:
        columns.append(("máscara", masks, {"cmap": "gray", "vmin": 0, "vmax": 1}))
    n = len(images)
    fig = Figure(figsize=(1.25 * len(columns) + 0.4, 1.3 * n + 1.4), dpi=DPI, layout="constrained")
    axes = fig.subplots(n, len(columns), squeeze=False)
    for column, (header, arrays, style) in zip(axes.T, columns, strict=True):
        column[0].set_title(header, fontsize=8)
        for ax, array in zip(column, arrays, strict=True):
            ax.imshow(array, **style)
            ax.set(xticks=[], yticks=[])
    for ax, row_title in zip(axes[:, 0], row_titles, strict=True):
        ax.set_ylabel(row_title, fontsize=7, rotation=0, ha="right", va="center")
    if models:
        maps = axes[:, 2 : 1 + 2 * len(models) : 2].ravel().tolist()
        bar = fig.colorbar(axes[0, 2].images[0], ax=maps, location="bottom", shrink=0.5, aspect=40)
        bar.set_label(f"mapa de anomalía, una escala para todos: 0 a {vmax:.2g}", fontsize=8)
    fig.suptitle(title, fontsize=10)
    return fig


def image_montage(rows: list[list[tuple[str, np.ndarray] | None]], title: str) -> Figure:
    """Titled images (uint8 [H,W,3]; e.g. media read back from a run, titled with their W&B key)
    in rows; a row's images share one height and fill the figure's 16 inches; None leaves a cell
    empty (as wide as the row's images on average, so the other cells keep their place)."""
    aspects = []
    for row in rows:
        known = [cell[1].shape[1] / cell[1].shape[0] for cell in row if cell is not None]
        blank = float(np.mean(known or [1.0]))
        aspects.append([blank if c is None else c[1].shape[1] / c[1].shape[0] for c in row])
    heights = [16.0 / sum(a) + 0.35 for a in aspects]  # + the tile titles
    fig = Figure(figsize=(16.0, sum(heights) + 0.5), dpi=DPI, layout="constrained")
    subfigs = fig.subfigures(len(rows), 1, height_ratios=heights, squeeze=False).ravel()
    for sub, row, aspect in zip(subfigs, rows, aspects, strict=True):
        axes = sub.subplots(1, len(row), width_ratios=aspect, squeeze=False)[0]
        for ax, cell in zip(axes, row, strict=True):
            ax.set_axis_off()
            if cell is not None:
                ax.imshow(cell[1])
                ax.set_title(cell[0], fontsize=9)
    fig.suptitle(title)
    return fig


def auroc_heatmap(table: pd.DataFrame) -> Figure:
    """The AUROC table (rows class/defect, columns runs) on a fixed 0-1 scale centred on 0.5
    (chance), so 0.19, 0.5 and 0.9 look different; values written in each cell."""
    values = table.drop(columns=["best_run"], errors="ignore").astype(float)
    labels = [f"{c} / {'(toda la clase)' if d == ALL else d}" for c, d in values.index]
    size = (1.1 * len(values.columns) + 3.5, 0.32 * len(values) + 1.8)
    fig = Figure(figsize=size, dpi=DPI, layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(values.to_numpy(), cmap="RdYlGn", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(values.columns)), list(values.columns), rotation=35, ha="right")
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    for (i, j), v in np.ndenumerate(values.to_numpy()):
        if not math.isnan(v):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7)
    fig.colorbar(image, ax=ax, label="AUROC (0.5 = azar)")
    ax.set_title("AUROC por imagen, por clase y defecto")
    return fig


def figure_array(fig: Figure) -> np.ndarray:
    """The figure rendered as a PNG would be, as uint8 [H,W,3]."""
    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return np.asarray(Image.open(buf).convert("RGB"))


def wandb_image(fig: Figure):
    """The figure as a `wandb.Image` (rendered here, so W&B needs no matplotlib hook)."""
    import wandb

    return wandb.Image(figure_array(fig))
