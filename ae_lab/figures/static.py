"""Static matplotlib figures for W&B (`wandb.Image`), the notebook and the HTML report.

Plotly versions stay in W&B as interactive extras; these are the ones a PDF, GitHub or a grader
sees. Labels are in Spanish (the hand-in's language), numbers with a decimal point. Figures are
built with the object-oriented API (`Figure`, no pyplot), so no GUI backend or global state.
"""

import io
import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ae_lab import keys
from ae_lab.metrics import ALL, defect_aurocs

LOSS_COLOURS = {"l1": "tab:blue", "l2": "tab:orange", "ssim": "tab:green", "ssim_l1": "tab:red"}
GOOD_COLOUR = "0.55"
DPI = 110


def loss_curves(runs: pd.DataFrame, history: pd.DataFrame, model: str) -> Figure:
    """One architecture: left, `train/loss` (solid) and `val/loss` (dashed) of each loss function
    against epoch on a log axis (each loss has its own scale); right, `val/l1`, the same error for
    every run, so the losses compare there."""
    fig = Figure(figsize=(11, 4.2), dpi=DPI, layout="constrained")
    left, right = fig.subplots(1, 2)
    sub = runs[runs["model"] == model].sort_values("loss")
    for _, run in sub.iterrows():
        h = history[history["run_id"] == run["run_id"]].sort_values(keys.EPOCH)
        colour = LOSS_COLOURS.get(str(run["loss"]))
        for key, style, what in ((keys.TRAIN_LOSS, "-", "entren."), (keys.VAL_LOSS, "--", "val.")):
            pts = h[[keys.EPOCH, key]].dropna()
            left.plot(pts[keys.EPOCH], pts[key], style, color=colour, marker=".",
                      label=f"{run['loss']} ({what})")  # fmt: skip
        pts = h[[keys.EPOCH, keys.VAL_L1]].dropna()
        right.plot(pts[keys.EPOCH], pts[keys.VAL_L1], "-", color=colour, marker=".",
                   label=str(run["loss"]))  # fmt: skip
    left.set_yscale("log")
    left.set(xlabel="época", ylabel="pérdida (escala de cada función, log)",
             title="Pérdida de entrenamiento (continua) y validación (discontinua)")  # fmt: skip
    right.set(xlabel="época", ylabel="error L1 medio de validación",
              title="val/l1: el mismo error para las cuatro pérdidas")  # fmt: skip
    left.legend(fontsize=8, ncol=2)
    right.legend(fontsize=8, title="pérdida")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(f"Arquitectura {model}: curvas de pérdida de las cuatro funciones de pérdida")
    return fig


def defect_histograms(
    scores: pd.DataFrame, category: str, column: str = "score", per_row: int = 4, bins: int = 15
) -> Figure:
    """One class: a small panel per defect type, its images (colour) against the class's good
    images (grey), on the same bins; y is the fraction of each group's images, so groups of
    different size compare. The panel title gives n and the AUROC of `column` for that defect."""
    part = scores[scores["category"] == category]
    defects = sorted(set(part["defect"]) - {"good"})
    aurocs = defect_aurocs(part, column).set_index("defect")["auroc"]
    good = part.loc[part["defect"] == "good", column].to_numpy()
    edges = np.histogram_bin_edges(part[column].to_numpy(), bins=bins)
    cols = max(1, min(per_row, len(defects)))
    rows = max(1, math.ceil(len(defects) / cols))
    fig = Figure(figsize=(3.2 * cols, 2.6 * rows + 0.6), dpi=DPI, layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, sharex=True, squeeze=False)).ravel()
    for ax, defect in zip(axes, defects, strict=False):
        values = part.loc[part["defect"] == defect, column].to_numpy()
        for data, colour, name in ((good, GOOD_COLOUR, "buenas"), (values, "tab:red", defect)):
            weights = np.full(len(data), 1 / max(1, len(data)))
            ax.hist(data, bins=edges, weights=weights, color=colour, alpha=0.6,
                    label=f"{name} (n={len(data)})")  # fmt: skip
        ax.set_title(f"{defect}: AUROC {aurocs.get(defect, math.nan):.2f}", fontsize=10)
        ax.legend(fontsize=7)
        ax.set_ylabel("fracción de imágenes", fontsize=8)
        ax.set_xlabel(AXIS_LABELS.get(column, column), fontsize=8)
    for ax in axes[len(defects) :]:
        ax.set_visible(False)
    fig.suptitle(f"{category}: {AXIS_LABELS.get(column, column)}, buenas contra cada defecto")
    return fig


AXIS_LABELS = {
    "score": "puntuación de anomalía",
    "l1": "error L1 de reconstrucción",
    "l2": "error L2 de reconstrucción",
    "ssim": "1 − SSIM de la reconstrucción",
    "ssim_l1": "0.84·(1 − SSIM) + 0.16·L1",
}


def tsne_scatter(table: pd.DataFrame, title: str) -> Figure:
    """An `evaluation.latents.tsne_table` (x, y, category) as a scatter, one colour per class."""
    fig = Figure(figsize=(6.2, 5), dpi=DPI, layout="constrained")
    ax = fig.subplots()
    for i, (cat, part) in enumerate(table.groupby("category", sort=True)):
        ax.scatter(
            part["x"], part["y"], s=14, alpha=0.8, color=f"C{i}", label=f"{cat} ({len(part)})"
        )
    ax.set(xlabel="t-SNE 1", ylabel="t-SNE 2", title=title)
    ax.legend(title="clase", fontsize=8)
    return fig


def auroc_heatmap(
    table: pd.DataFrame, title: str = "AUROC por imagen, por clase y defecto"
) -> Figure:
    """Rows (class, defect), columns runs; a fixed 0-1 colour scale centred on 0.5 (chance), so
    0.19, 0.5 and 0.9 look different; values written in each cell."""
    values = table.drop(columns=["best_run"], errors="ignore").astype(float)
    labels = [f"{c} / {'(toda la clase)' if d == ALL else d}" for c, d in values.index]
    fig = Figure(
        figsize=(1.1 * len(values.columns) + 3.5, 0.32 * len(values) + 1.8), dpi=DPI,
        layout="constrained",
    )  # fmt: skip
    ax = fig.subplots()
    image = ax.imshow(values.to_numpy(), cmap="RdYlGn", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(values.columns)), list(values.columns), rotation=35, ha="right")
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    for (i, j), v in np.ndenumerate(values.to_numpy()):
        if not math.isnan(v):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7)
    fig.colorbar(image, ax=ax, label="AUROC (0.5 = azar)")
    ax.set_title(title)
    return fig


def png_bytes(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def save_png(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_bytes(fig))
    return path


def wandb_image(fig: Figure, caption: str | None = None):
    """The figure as a `wandb.Image` (a PNG rendered here, so W&B needs no matplotlib hook)."""
    import wandb
    from PIL import Image

    return wandb.Image(Image.open(io.BytesIO(png_bytes(fig))), caption=caption)


def analysis_images(runs: pd.DataFrame, history: pd.DataFrame, auroc: pd.DataFrame) -> dict:
    """The cross-run static figures of the analysis run, keyed by W&B key: the loss curves of each
    architecture and the AUROC heat map."""
    out = {
        f"analysis/loss_curves_image/{m}": loss_curves(runs, history, m)
        for m in sorted(runs["model"].dropna().unique())
    }
    out["analysis/auroc_heatmap_image"] = auroc_heatmap(auroc)
    return out
