"""Build every table and figure of the analysis from the run frames (`report.html` writes them)."""

from dataclasses import dataclass, field

import pandas as pd
import plotly.graph_objects as go
from matplotlib.figure import Figure

from ae_lab.analysis import figures, ranking, tables
from ae_lab.analysis.sources import RunData
from ae_lab.figures.static import analysis_images


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
