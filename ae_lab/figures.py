"""Every figure a run, the analysis and the notebook draw, one function each.

Plotly (interactive W&B panels): `error_histograms`, `tsne_figure`, `histogram_grid`; each goes
through `plain_figure` so W&B's Plotly panel can draw it. Matplotlib (W&B images, the notebook,
the HTML report; labels in Spanish, the hand-in's language): `loss_curves`,
`loss_curves_comparison`, `defect_histograms`, `loss_histograms`, `tsne_scatter`,
`reconstruction_comparison`, `image_montage`, `auroc_heatmap`. Figures use the object-oriented
API (`Figure`, no pyplot).
"""

import base64
import io
import math

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from plotly.subplots import make_subplots

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

    def plain(obj):
        if isinstance(obj, dict) and "bdata" in obj and "dtype" in obj:
            arr = np.frombuffer(base64.b64decode(obj["bdata"]), dtype=np.dtype(obj["dtype"]))
            shape = obj.get("shape")
            dims = shape.split(",") if isinstance(shape, str) else shape
            return (arr.reshape([int(d) for d in dims]) if dims else arr).tolist()
        if isinstance(obj, dict):
            return {k: plain(v) for k, v in obj.items()}
        return [plain(v) for v in obj] if isinstance(obj, list | tuple) else obj

    return go.Figure(plain(fig.to_plotly_json()))


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
        name = f"{prefix}{defect} (n={len(values)}"
        name += ")" if defect == "good" else f", AUROC={aurocs[defect]:.3f})"
        traces.append(
            go.Histogram(
                x=values.to_numpy(),
                name=name,
                xbins={"start": lo, "end": hi + size, "size": size},
                histnorm="probability",
                opacity=0.6,
                marker_color=GOOD_GREY[0] if defect == "good" else None,
            )
        )
    return traces


def error_histograms(
    scores: pd.DataFrame, nbins: int = 30, column: str = "score"
) -> dict[str, go.Figure]:
    """Per class: overlaid histograms of one per-image value, good vs each defect type."""
    figs = {}
    for cat, part in scores.groupby("category", sort=True):
        fig = go.Figure(histogram_traces(part, column, nbins))
        what = (
            "image anomaly score" if column == "score" else "reconstruction error in the run's loss"
        )
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
    for j, run_id in enumerate(runs["run_id"]):
        for i, cat in enumerate(cats):
            part = scores[(scores["run_id"] == run_id) & (scores["category"] == cat)]
            prefix = f"{runs.iloc[j]['label']} {cat}: "
            for trace in histogram_traces(part, nbins=20, prefix=prefix):
                fig.add_trace(trace, row=i + 1, col=j + 1)
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


def loss_curves(runs: pd.DataFrame, history: pd.DataFrame, model: str) -> Figure:
    """One architecture: left, `train/loss` (solid) and `val/loss` (dashed) of each loss function
    on a log axis (each loss has its own scale); right, `val/l1`, the same error for every run."""
    fig = Figure(figsize=(11, 4.2), dpi=DPI, layout="constrained")
    left, right = fig.subplots(1, 2)
    for _, run in runs[runs["model"] == model].sort_values("loss").iterrows():
        h = history[history["run_id"] == run["run_id"]].sort_values(keys.EPOCH)
        colour = LOSS_COLOURS.get(str(run["loss"]))
        _train_val(left, h, colour, run["loss"])
        pts = h[[keys.EPOCH, keys.VAL_L1]].dropna()
        right.plot(pts[keys.EPOCH], pts[keys.VAL_L1], color=colour, marker=".", label=run["loss"])
    n_losses = runs.loc[runs["model"] == model, "loss"].nunique()
    left.set_yscale("log")
    left.set_title("Pérdida de entrenamiento (continua) y validación (discontinua)")
    left.set(xlabel="época", ylabel="pérdida (escala de cada función, log)")
    # Log axis: the runs' final errors differ by a factor of ten, invisible on a linear one.
    right.set_yscale("log")
    right.set_title(f"val/l1: el mismo error para {plural(n_losses, 'pérdida')}")
    right.set(xlabel="época", ylabel="error L1 medio de validación (log)")
    left.legend(fontsize=8, ncol=2)
    right.legend(fontsize=8, title="pérdida")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
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
            colour = MODEL_COLOURS[i % len(MODEL_COLOURS)]
            for run_id in runs.loc[(runs["model"] == model) & (runs["loss"] == loss), "run_id"]:
                h = history[history["run_id"] == run_id].sort_values(keys.EPOCH)
                _train_val(ax, h, colour, model)
        ax.set_yscale("log")
        ax.set(title=f"pérdida {loss_name(loss)}", xlabel="época")
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=7, loc="upper right")
    axes[0].set_ylabel("pérdida (escala de cada función, log)")
    fig.suptitle(
        "Arquitecturas en los mismos ejes, una función de pérdida por panel: "
        "entrenamiento (continua) y validación (discontinua)"
    )
    return fig


AXIS_NAMES = {"score": "puntuación de anomalía", "loss": "error de reconstrucción (pérdida)"}


def _good_vs_defects(axes, part: pd.DataFrame, defects: list[str], column: str, edges) -> None:
    """One run and class, a panel per defect type: its good images (grey) against that defect
    (red) on the bins `edges`, as fractions of each group, titled with the defect's AUROC."""
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


def defect_histograms(
    scores: pd.DataFrame, category: str, column: str = "score", per_row: int = 4
) -> Figure:
    """One class: a panel per defect type, its images (red) against the class's good images (grey)
    on the same bins, as fractions of each group; the panel title gives the defect's AUROC of
    `column` (`score`, or `loss`: the per-image error in the run's own loss)."""
    axis = AXIS_NAMES.get(column, column)
    part = scores[scores["category"] == category]
    defects = sorted(set(part["defect"]) - {"good"})
    cols = max(1, min(per_row, len(defects)))
    rows = max(1, math.ceil(len(defects) / cols))
    fig = Figure(figsize=(max(4.8, 3.2 * cols), 2.6 * rows + 0.8), dpi=DPI, layout="constrained")
    axes = fig.subplots(rows, cols, sharex=True, squeeze=False).ravel()
    edges = np.histogram_bin_edges(part[column].to_numpy(), bins=15)
    _good_vs_defects(axes, part, defects, column, edges)
    for ax in axes[: len(defects)]:
        ax.set_xlabel(axis, fontsize=8)
        ax.set_ylabel("fracción de imágenes", fontsize=8)
    for ax in axes[len(defects) :]:
        ax.set_visible(False)
    fig.suptitle(f"{category}: {axis},\nbuenas frente a cada tipo de defecto", fontsize=10)
    return fig


def loss_histograms(
    scores: pd.DataFrame, runs: pd.DataFrame, category: str, column: str = "loss"
) -> Figure:
    """One class, a row per run (`runs`: one architecture's losses), a column per defect type:
    the run's good images (grey) against that defect (red) on bins shared by the row (each loss
    has its own scale), titled with the AUROC of `column` (`loss`: each run's per-image error in
    its own loss)."""
    part = scores[scores["category"] == category]
    defects = sorted(set(part["defect"]) - {"good"})
    size = (max(4.8, 2.7 * len(defects) + 0.9), 2.3 * len(runs) + 1.0)
    fig = Figure(figsize=size, dpi=DPI, layout="constrained")
    axes = fig.subplots(len(runs), max(1, len(defects)), squeeze=False)
    pairs = runs[["run_id", "loss"]].itertuples(index=False)
    for row, (run_id, loss) in zip(axes, pairs, strict=True):
        mine = part[part["run_id"] == run_id].dropna(subset=[column])
        edges = np.histogram_bin_edges(mine[column].to_numpy(), bins=15)
        _good_vs_defects(row, mine, defects, column, edges)
        row[0].set_ylabel(f"{loss_name(loss)}\nfracción de imágenes", fontsize=9)
    for ax in axes[-1]:
        ax.set_xlabel(AXIS_NAMES.get(column, column), fontsize=8)
    model = ", ".join(sorted(runs["model"].astype(str).unique()))
    fig.suptitle(
        f"Arquitectura {model}, clase {category}: error de reconstrucción de cada modelo en su "
        "propia pérdida (una fila por pérdida),\nbuenas (gris) frente a cada tipo de defecto (rojo)"
    )
    return fig


def tsne_scatter(table: pd.DataFrame, title: str, by: str = "category", ax=None) -> Figure:
    """A `tsne_table` (x, y, category, label) as a scatter, one colour per class (`by="category"`)
    or good vs defective (`by="label"`); drawn on `ax` when given."""
    if ax is None:
        ax = Figure(figsize=(6.2, 5), dpi=DPI, layout="constrained").subplots()
    style = {0: ("buenas", GOOD_GREY[1]), 1: ("defectuosas", "tab:red")} if by == "label" else {}
    for i, (value, part) in enumerate(table.groupby(by, sort=True)):
        name, colour = style.get(value, (value, f"C{i}"))
        ax.scatter(
            part["x"], part["y"], s=12, alpha=0.7, color=colour, label=f"{name} ({len(part)})"
        )
    ax.set(xlabel="t-SNE 1", ylabel="t-SNE 2", title=title)
    ax.legend(title="clase" if by == "category" else "imágenes", fontsize=8)
    return ax.figure


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
    n, cols = len(images), 1 + 2 * len(models) + (masks is not None)
    fig = Figure(figsize=(1.25 * cols + 0.4, 1.3 * n + 1.4), dpi=DPI, layout="constrained")
    axes = fig.subplots(n, cols, squeeze=False)
    headers = [
        f"{what}\n{name}" for name in models for what in ("reconstrucción", "mapa de anomalía")
    ]
    headers = ["original", *headers, *(["máscara"] if masks is not None else [])]
    for ax, header in zip(axes[0], headers, strict=True):
        ax.set_title(header, fontsize=8)
    for i in range(n):
        axes[i, 0].imshow(images[i])
        axes[i, 0].set_ylabel(row_titles[i], fontsize=7, rotation=0, ha="right", va="center")
        if masks is not None:
            axes[i, -1].imshow(masks[i], cmap="gray", vmin=0, vmax=1)
    for j, (recons, maps) in enumerate(models.values()):
        for i in range(n):
            axes[i, 1 + 2 * j].imshow(recons[i])
            shown = axes[i, 2 + 2 * j].imshow(maps[i], cmap="inferno", vmin=0.0, vmax=vmax)
    for ax in axes.ravel():
        ax.set(xticks=[], yticks=[])
    if models:
        map_axes = axes[:, 2 : 1 + 2 * len(models) : 2].ravel().tolist()
        bar = fig.colorbar(shown, ax=map_axes, location="bottom", shrink=0.5, aspect=40)
        bar.set_label(f"mapa de anomalía, una escala para todos: 0 a {vmax:.2g}", fontsize=8)
    fig.suptitle(title, fontsize=10)
    return fig


def image_montage(
    rows: list[list[tuple[str, np.ndarray] | None]], title: str, width: float = 16.0
) -> Figure:
    """Titled images (uint8 [H,W,3]; e.g. media read back from a run, titled with their W&B key)
    in rows; a row's images share one height and fill `width` inches; None leaves a cell empty
    (the row's other cells keep their place)."""
    aspects = []
    for row in rows:
        shapes = [cell[1].shape for cell in row if cell is not None] or [(1, 1)]
        blank = float(np.mean([w / h for h, w, *_ in shapes]))
        aspects.append([blank if c is None else c[1].shape[1] / c[1].shape[0] for c in row])
    heights = [width / sum(a) + 0.35 for a in aspects]  # + the tile titles
    fig = Figure(figsize=(width, sum(heights) + 0.5), dpi=DPI, layout="constrained")
    subfigs = fig.subfigures(len(rows), 1, height_ratios=heights, squeeze=False).ravel()
    for sub, row, aspect in zip(subfigs, rows, aspects, strict=True):
        axes = np.atleast_1d(sub.subplots(1, len(row), width_ratios=aspect))
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


def wandb_image(fig: Figure, caption: str | None = None):
    """The figure as a `wandb.Image` (rendered here, so W&B needs no matplotlib hook)."""
    import wandb

    return wandb.Image(figure_array(fig), caption=caption)
