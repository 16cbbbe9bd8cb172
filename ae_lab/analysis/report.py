"""`run_analysis`, what `analyze.py` calls: load the runs, analyse them, write the report folder
(`reports/<project>/`: tables, figures, `index.html`), log it to W&B as a `job_type=analysis` run.

The folder is built next to its destination and swapped in under a file lock, so two analyses into
one `--out` each leave a whole report, and a re-run leaves no stale figures.
"""

import html
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from filelock import FileLock
from matplotlib.figure import Figure
from plotly.graph_objects import Figure as PlotlyFigure
from plotly.offline import get_plotlyjs

from ae_lab import keys
from ae_lab.analysis import tables
from ae_lab.analysis.runs import ANALYSIS_JOB_TYPE, RunData, load_runs, log
from ae_lab.callbacks import has_wandb_credentials
from ae_lab.figures import (
    auroc_heatmap,
    defect_histograms,
    histogram_grid,
    loss_curves,
    save_png,
    wandb_image,
)
from ae_lab.report import interval_table


@dataclass
class Analysis:
    """Everything the report shows; figures are keyed by their W&B key (`analysis/...`)."""

    run_table: pd.DataFrame
    auroc_table: pd.DataFrame
    score_gaps: pd.DataFrame
    ranking: list[str]
    mismatches: list[str]  # AUROCs recomputed from the scores that differ from the summaries
    warnings: list[str]  # the mismatches and other caveats, for the log and the page
    figures: dict[str, PlotlyFigure]  # interactive, logged as wandb.Plotly
    images: dict[str, Figure]  # static, logged as wandb.Image


@dataclass
class LoggedRun:
    mode: str  # online | offline | disabled
    run_dir: Path | None  # the analysis run's folder (offline: sync it with `wandb sync`)
    url: str | None
    run_id: str | None = None  # to read its media back (`ae_lab.report`)


@dataclass
class AnalysisResult:
    data: RunData
    analysis: Analysis
    index_html: Path
    logged: LoggedRun | None
    report_url: str | None  # the W&B Report's URL, or why none was made


def analyse(data: RunData) -> Analysis:
    """All tables, sentences and figures of the report (pure: frames in, objects out)."""
    runs, scores = data.runs, data.scores
    auroc = tables.auroc_table(runs, scores)
    gaps = tables.score_gaps(runs, scores)
    # The best run of each architecture (the first where `test/image_auroc` is missing).
    ranked = (
        runs.sort_values(keys.TEST_IMAGE_AUROC, ascending=False)
        if keys.TEST_IMAGE_AUROC in runs
        else runs
    )
    best = ranked.groupby("model", sort=True).head(1).sort_values("model")
    title = "Best run per architecture: image score, good vs defect types"
    figs = {"analysis/histograms/best_per_architecture": histogram_grid(best, scores, title)}
    for i, label in enumerate(runs["label"]):
        title = f"{label}: image score of good vs defective test images"
        figs[f"analysis/histograms/{label}"] = histogram_grid(runs.iloc[[i]], scores, title)
    images = {
        f"analysis/loss_curves_image/{m}": loss_curves(runs, data.history, m)
        for m in sorted(runs["model"].dropna().unique())
    }
    images["analysis/auroc_heatmap_image"] = auroc_heatmap(auroc)
    mismatches = tables.auroc_mismatches(runs, auroc)
    return Analysis(
        run_table=tables.run_table(runs, data.history),
        auroc_table=auroc,
        score_gaps=gaps,
        ranking=tables.ranking(runs, auroc, gaps),
        mismatches=mismatches,
        warnings=[f"AUROC check: {m}" for m in mismatches] + tables.class_warning(runs),
        figures=figs,
        images=images,
    )


# ---- the report folder --------------------------------------------------------------------------
STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
line-height:1.45;color:#222}h1{font-size:1.6em}h2{margin-top:1.8em;border-bottom:1px solid #ddd}
figure{margin:1em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.9em;color:#555}.scroll{overflow-x:auto;max-width:100%}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(700px,1fr));gap:1em}
.tbl{border-collapse:collapse;font-size:13px}.tbl td,.tbl th{border:1px solid #ccc;padding:3px 6px}"""
RUN_COLUMNS = ["label", "model", "loss", "final_train_loss", "final_val_loss",
               f"final_{keys.VAL_L1}", f"final_{keys.VAL_ONE_MINUS_SSIM}"]  # fmt: skip
HEADERS = {  # the report's language; the CSV files keep the column names
    "label": "corrida", "model": "modelo", "loss": "pérdida", "category": "clase",
    "defect": "defecto", "good_mean": "media buenas", "defect_mean": "media defecto",
    "gap_std": "distancia (desv. est.)", "auroc": "AUROC", "final_train_loss": "train/loss final",
    "final_val_loss": "val/loss final",
}  # fmt: skip
INTRO = """<p>Se entrenan autoencoders sólo con imágenes buenas y se usa su error de reconstrucción
como puntuación de anomalía. La grilla compara dos arquitecturas (<code>ae</code>, un autoencoder
convolucional con cuello de botella, y <code>unet</code>, con conexiones <i>skip</i>) y cuatro
pérdidas (L1, L2, 1 − SSIM y su mezcla). La detección se mide con el AUROC por imagen de cada
clase, promediado sobre las clases.</p>"""
UNCERTAINTY = """<p>AUROC medio de las clases con su intervalo de bootstrap al 95 % (imágenes de test
remuestreadas dentro de cada clase). Corridas con intervalos solapados no se distinguen con estos
datos.</p>{table}<p>Junto a las cifras publicadas: son autoencoders simples entrenados minutos en
una CPU, sin pesos preentrenados; los métodos de reconstrucción que publican 0.85-0.98 de AUROC
por imagen en MVTec AD (RIAD, DRAEM) entrenan cientos de épocas en GPU a 256 px, y DRAEM añade una
red discriminativa. Sobre datos sintéticos, además, un AUROC alto sólo dice que estos defectos
dibujados se separan; no predice el de MVTec real (el tornillo real se mide aparte:
bench/README.md).</p>"""


def slug(key: str) -> str:
    """`analysis/histograms/ae-l1-z32` -> `histograms__ae-l1-z32` (a safe file name)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", key.removeprefix("analysis/").replace("/", "__"))


def _table(frame: pd.DataFrame, digits: int = 3) -> str:
    styler = frame.rename(columns=HEADERS).style.format(precision=digits, escape="html")
    table = styler.hide(axis="index").set_table_attributes('class="tbl"').to_html()
    return f'<div class="scroll">{table}</div>'


def _figure(src: str, caption: str) -> str:
    src, caption = html.escape(src), html.escape(caption)
    return f'<figure><img src="{src}" alt="{caption}"><figcaption>{caption}</figcaption></figure>'


def index_html(analysis: Analysis, data: RunData, out: Path) -> str:
    """The page; writes the per-class histogram PNGs of each architecture's best run into `out`."""
    esc, runs = html.escape, data.runs
    title = f"Detección de anomalías por reconstrucción: {data.project}"
    ci = interval_table(runs, data.scores).sort_values("AUROC", ascending=False)
    p = [f"<h1>{esc(title)}</h1>", INTRO, f"<p>Fuente: {esc(data.source)}; grupo "
         f"{esc(str(data.group or '—'))}; {len(runs)} corridas.</p>",
         "<h2>Resultado con incertidumbre</h2>", UNCERTAINTY.format(table=_table(ci))]  # fmt: skip
    warnings = [*data.skipped, *analysis.warnings]
    if warnings:
        p += ["<h2>Avisos</h2><ul>", *(f"<li>{esc(w)}</li>" for w in warnings), "</ul>"]
    p += ["<h2>Curvas de pérdida</h2>"]
    for key in [k for k in analysis.images if "loss_curves" in k]:
        p += [_figure(f"figures/{slug(key)}.png", f"Arquitectura {key.rsplit('/', 1)[-1]}: pérdida "
              "de entrenamiento y validación de las cuatro pérdidas (izq.) y val/l1, comparable entre "
              "ellas (der.).")]  # fmt: skip
    p += ["<h2>AUROC por clase y defecto</h2>",
          _figure("figures/auroc_heatmap_image.png", "AUROC por imagen; escala fija de 0 a 1, 0.5 = "
                  "azar. Rojo: el defecto puntúa por debajo de las imágenes buenas."),
          '<p><a href="auroc_table.csv">Tabla completa (CSV)</a></p>',
          "<h2>Histogramas por clase</h2><p>Mejor corrida de cada arquitectura: puntuación de las "
          "imágenes buenas (gris) contra cada tipo de defecto (rojo), como fracción de las imágenes "
          "de cada grupo.</p>"]  # fmt: skip
    best = analysis.figures["analysis/histograms/best_per_architecture"]
    for label in dict.fromkeys(t.name.split(" ")[0] for t in best.data):
        sc = data.scores[data.scores["run_id"] == runs.set_index("label").at[label, "run_id"]]
        cells = []
        for cat in sorted(sc["category"].unique()):
            name = f"figures/histograms__{slug(label)}__{cat}.png"
            save_png(defect_histograms(sc, cat), out / name)
            cells.append(_figure(name, f"{label}: {cat}"))
        p += [f"<h3>{esc(label)}</h3>", '<div class="grid">', *cells, "</div>"]
    p += ["<h2>Defectos peor separados</h2><p>Los 10 pares corrida/defecto con menor distancia entre "
          "la puntuación media de las defectuosas y la de las buenas (en desviaciones estándar de "
          'las buenas). <a href="score_gaps.csv">Tabla completa (CSV)</a>.</p>',
          _table(analysis.score_gaps.sort_values("gap_std").head(10)), "<h2>Corridas</h2>",
          _table(analysis.run_table[[c for c in RUN_COLUMNS if c in analysis.run_table]], 4),
          '<p><a href="run_table.csv">Todas las columnas (CSV)</a>. Versión interactiva (Plotly) '
          '<a href="figures/histograms__best_per_architecture.html">de los histogramas</a>.</p>']  # fmt: skip
    head = f'<meta charset="utf-8"><title>{esc(title)}</title><style>{STYLE}</style>'
    return f"<!DOCTYPE html><html lang='es'><head>{head}</head><body>{''.join(p)}</body></html>\n"


def write_report(analysis: Analysis, data: RunData, out_dir: str | Path) -> Path:
    """Write CSV + Markdown tables, the figures (PNG; Plotly as HTML with plotly.js next to them,
    so the report works without a network) and `index.html` into `out_dir`, replacing it whole."""
    out = Path(out_dir).absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        (tmp / "figures").mkdir()
        (tmp / "plotly.min.js").write_text(get_plotlyjs(), encoding="utf-8")
        for name, frame in (("run_table", analysis.run_table), ("score_gaps", analysis.score_gaps)):
            frame.to_csv(tmp / f"{name}.csv", index=False)
            (tmp / f"{name}.md").write_text(tables.to_markdown(frame))
        analysis.auroc_table.to_csv(tmp / "auroc_table.csv")
        md = tables.to_markdown(analysis.auroc_table, list(data.runs["label"]))
        (tmp / "auroc_table.md").write_text(md)
        (tmp / "ranking.md").write_text("".join(f"- {line}\n" for line in analysis.ranking))
        for key, fig in analysis.figures.items():
            fig.write_html(
                tmp / "figures" / f"{slug(key)}.html", include_plotlyjs="../plotly.min.js"
            )
        for key, image in analysis.images.items():
            save_png(image, tmp / "figures" / f"{slug(key)}.png")
        (tmp / "index.html").write_text(index_html(analysis, data, tmp), encoding="utf-8")
        with FileLock(out.parent / f".{out.name}.lock"):
            old = out.parent / f"{tmp.name}-old"
            if out.exists():
                out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out / "index.html"


# ---- W&B ----------------------------------------------------------------------------------------
def wandb_mode(data: RunData) -> str:
    """WANDB_MODE wins; else offline for offline runs or without credentials, like training."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    return "offline" if data.offline_root is not None or not has_wandb_credentials() else "online"


def _group(data: RunData) -> str | None:
    groups = data.runs["group"].dropna().unique()
    return data.group or (str(groups[0]) if len(groups) == 1 else None)


def log_analysis_run(analysis: Analysis, data: RunData, report_dir: Path) -> LoggedRun:
    """A new run in the same project/group: figures, tables, ranking, and the report folder as an
    artifact. Offline runs go next to the analysed ones (`<offline_root>/wandb/`)."""
    import wandb

    mode = wandb_mode(data)
    run = wandb.init(
        project=data.project,
        group=_group(data),
        job_type=ANALYSIS_JOB_TYPE,
        name=f"analysis-{_group(data) or data.project}",
        mode=mode,
        dir=str(data.offline_root) if mode == "offline" and data.offline_root else None,
        config={"source": data.source, "runs": list(data.runs["label"]), "skipped": data.skipped},
    )
    payload = {key: wandb.Plotly(fig) for key, fig in analysis.figures.items()}
    payload |= {key: wandb_image(fig) for key, fig in analysis.images.items()}
    for name in ("run_table", "auroc_table", "score_gaps"):
        frame = getattr(analysis, name)
        payload[f"analysis/{name}"] = wandb.Table(
            dataframe=frame.reset_index() if name == "auroc_table" else frame
        )
    items = "".join(f"<li>{html.escape(line)}</li>" for line in analysis.ranking)
    payload["analysis/ranking"] = wandb.Html(
        f"<ul>{items}</ul>", inject=False, data_is_not_path=True
    )
    run.log(payload)
    run.summary["analysis/n_runs"] = len(data.runs)
    artifact = wandb.Artifact(f"analysis-report-{data.project}", type="analysis-report")
    artifact.add_dir(str(report_dir))
    run.log_artifact(artifact)
    run_dir = Path(run.dir).parent if mode != "disabled" else None
    logged = LoggedRun(mode, run_dir, run.url if mode == "online" else None, run.id)
    run.finish()
    return logged


def report_blocks(analysis: Analysis, data: RunData, entity: str) -> list:
    """The W&B Report: ranking, loss curves of the group's runs, the analysis tables."""
    import wandb_workspaces.reports.v2 as wr

    group = _group(data)
    filters = f"JobType != '{ANALYSIS_JOB_TYPE}'"
    if group:
        filters = f"Config('logger.group') == '{group}' and " + filters
    curves = [  # train and val loss in one panel; val/l1 compares across losses
        wr.LinePlot(title="train/loss y val/loss", x="epoch", y=["train/loss", "val/loss"]),
        wr.LinePlot(title="val/l1", x="epoch", y=["val/l1"]),
    ]
    tabs = [
        wr.WeavePanelSummaryTable(table_name=f"analysis/{t}") for t in ("run_table", "auroc_table")
    ]
    return [
        wr.H1(f"ae-lab analysis: {data.project}" + (f" / {group}" if group else "")),
        wr.UnorderedList(items=list(analysis.ranking)),
        wr.PanelGrid(
            runsets=[wr.Runset(entity=entity, project=data.project, filters=filters)], panels=curves
        ),
        wr.PanelGrid(runsets=[wr.Runset(entity=entity, project=data.project)], panels=tabs),
    ]


def create_wandb_report(analysis: Analysis, data: RunData, entity: str | None) -> str:
    """Save a W&B Report (needs W&B online and `wandb-workspaces`); returns its URL or why not."""
    if wandb_mode(data) != "online":
        return "--report needs W&B online (credentials and no WANDB_MODE=offline/--offline-dir): skipped."
    try:
        import wandb
        import wandb_workspaces.reports.v2 as wr
    except ImportError:
        return "--report needs `pip install wandb-workspaces` (extra `report`): skipped."
    entity = entity or wandb.Api().default_entity
    report = wr.Report(
        project=data.project,
        entity=entity,
        title=f"ae-lab analysis: {data.project}",
        description="Generated by analyze.py from the runs' losses, scores and AUROCs.",
        blocks=report_blocks(analysis, data, entity),
    )
    try:
        report.save()
    except Exception as err:  # network or permission: the local report stands
        log.warning(f"saving the W&B Report failed: {err}")
        return f"W&B Report not saved: {err}"
    return report.url


def run_analysis(
    project: str,
    entity: str | None = None,
    group: str | None = None,
    sweep: str | None = None,
    offline_dir: str | Path | None = None,
    out_dir: str | Path | None = None,
    report: bool = False,
    log_to_wandb: bool = True,
) -> AnalysisResult:
    """Load, analyse, write the folder (default `reports/<project>/`), log to W&B."""
    data = load_runs(project, entity=entity, group=group, sweep=sweep, offline_dir=offline_dir)
    analysis = analyse(data)
    for warning in analysis.warnings:
        log.warning(warning)
    index = write_report(analysis, data, out_dir or Path("reports") / project)
    logged = log_analysis_run(analysis, data, index.parent) if log_to_wandb else None
    report_url = create_wandb_report(analysis, data, entity) if report else None
    return AnalysisResult(data, analysis, index, logged, report_url)
