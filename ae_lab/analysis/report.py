"""Build every table and figure from the run frames, and write them as a folder with `index.html`."""

import html
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
    index.write_text(_index_html(analysis, data, run_cols), encoding="utf-8")
    return index


def _html_table(table: pd.DataFrame, bold_best_of: list[str] | None = None) -> str:
    """The table as HTML (pandas Styler): 4 decimals, the row maximum of `bold_best_of` in bold."""
    frame = table.reset_index() if not isinstance(table.index, pd.RangeIndex) else table
    styler = frame.style.format(precision=4, escape="html").hide(axis="index")
    if bold_best_of:
        styler = styler.highlight_max(subset=bold_best_of, axis=1, props="font-weight:bold")
    return styler.set_table_attributes('class="tbl"').to_html()


def _index_html(analysis: Analysis, data: RunData, run_cols: list[str]) -> str:
    esc = html.escape
    title = f"ae-lab analysis: {data.project}" + (f" / {data.group}" if data.group else "")
    parts = [f"<h1>{esc(title)}</h1>", f"<p>Source: {esc(data.source)}; {len(run_cols)} runs.</p>"]
    parts += ["<h2>Ranking</h2><ul>", *(f"<li>{esc(s)}</li>" for s in analysis.ranking), "</ul>"]
    notes = [*data.skipped, *analysis.mismatches, *analysis.notes]
    if notes:
        parts += ["<h2>Notes</h2><ul>", *(f"<li>{esc(n)}</li>" for n in notes), "</ul>"]
    parts += ["<h2>Runs</h2>", _html_table(analysis.run_table)]
    parts += ["<h2>Image AUROC per class and defect (best in bold)</h2>"]
    parts += [_html_table(analysis.auroc_table, run_cols)]
    parts += ["<h2>Figures</h2>"]
    for key, fig in analysis.figures.items():
        link = f'<p><a href="figures/{slug(key)}.html">{esc(key)}</a></p>'
        parts += [link, fig.to_html(full_html=False, include_plotlyjs=False)]
    parts += ["<h2>Good vs defect score gap</h2>", _html_table(analysis.score_gaps)]
    style = (
        "body{font-family:sans-serif;margin:2em}.tbl{border-collapse:collapse;font-size:13px}"
        ".tbl td,.tbl th{border:1px solid #ccc;padding:3px 6px;text-align:right}"
    )
    head = f'<meta charset="utf-8"><title>{esc(title)}</title><style>{style}</style>'
    head += f'<script src="{PLOTLY_JS}"></script>'
    return f"<!DOCTYPE html><html><head>{head}</head><body>{''.join(parts)}</body></html>\n"
