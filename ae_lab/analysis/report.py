"""Build every table and figure from the run frames, and write them as a folder with `index.html`."""

import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
from matplotlib.figure import Figure
from plotly.offline import get_plotlyjs

from ae_lab.analysis import figures, ranking, tables
from ae_lab.analysis.sources import RunData
from ae_lab.report.figures import analysis_images, save_png
from ae_lab.report.html import index_html

PLOTLY_JS = "plotly.min.js"


@dataclass
class Analysis:
    """Everything the report shows; `figures` is keyed by its W&B key (`analysis/...`)."""

    run_table: pd.DataFrame
    auroc_table: pd.DataFrame
    score_gaps: pd.DataFrame
    ranking: list[str]
    mismatches: list[str]
    figures: dict[str, go.Figure]
    notes: list[str] = field(default_factory=list)
    images: dict[str, Figure] = field(default_factory=dict)  # static twins, logged as wandb.Image


def analyse(data: RunData) -> Analysis:
    """All tables, sentences and figures of the report (pure: frames in, objects out)."""
    runs, scores = data.runs, data.scores
    auroc = tables.auroc_table(runs, scores)
    gaps = tables.score_gaps(runs, scores)
    figs: dict[str, go.Figure] = {}
    for model in sorted(runs["model"].dropna().unique()):
        figs[f"analysis/loss_curves/{model}"] = figures.loss_curves(runs, data.history, model)
    figs["analysis/histograms/best_per_architecture"] = figures.best_run_histograms(runs, scores)
    for run_id, label in zip(runs["run_id"], runs["label"], strict=True):
        title = f"{label}: image score of good vs defective test images"
        figs[f"analysis/histograms/{label}"] = figures.score_histograms(
            scores[scores["run_id"] == run_id], title
        )
    figs["analysis/auroc_heatmap"] = figures.auroc_heatmap(auroc)
    return Analysis(
        run_table=tables.run_table(runs, data.history),
        auroc_table=auroc,
        score_gaps=gaps,
        ranking=ranking.ranking(runs, auroc, gaps),
        mismatches=tables.auroc_mismatches(runs, auroc),
        figures=figs,
        images=analysis_images(runs, data.history, auroc),
    )


def slug(key: str) -> str:
    """`analysis/histograms/ae-l1-z32` -> `histograms__ae-l1-z32` (a safe file name)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", key.removeprefix("analysis/").replace("/", "__"))


def write_report(analysis: Analysis, data: RunData, out_dir: str | Path) -> Path:
    """Write CSV + Markdown tables, one HTML per Plotly figure, one PNG per static
    figure (`analysis.images`) and `index.html`.

    plotly.js is written once next to `index.html`, so the report works without a network.
    """
    out = Path(out_dir)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    js = out / PLOTLY_JS
    if not js.is_file():
        js.write_text(get_plotlyjs(), encoding="utf-8")
    run_cols = list(data.runs["label"])
    analysis.run_table.to_csv(out / "run_table.csv", index=False)
    analysis.auroc_table.to_csv(out / "auroc_table.csv")
    analysis.score_gaps.to_csv(out / "score_gaps.csv", index=False)
    (out / "run_table.md").write_text(tables.to_markdown(analysis.run_table))
    (out / "auroc_table.md").write_text(tables.to_markdown(analysis.auroc_table, run_cols))
    (out / "score_gaps.md").write_text(tables.to_markdown(analysis.score_gaps))
    (out / "ranking.md").write_text("".join(f"- {line}\n" for line in analysis.ranking))
    for key, fig in analysis.figures.items():
        fig.write_html(out / "figures" / f"{slug(key)}.html", include_plotlyjs=f"../{PLOTLY_JS}")
    for key, image in analysis.images.items():
        save_png(image, out / "figures" / f"{slug(key)}.png")
    index = out / "index.html"
    index.write_text(index_html(analysis, data, out, slug), encoding="utf-8")
    return index
