"""`run_analysis`, what `analyze.py` calls: load the runs, analyse them, write the report folder
(`reports/<project>/`: tables, figures, `index.html`), log it to W&B as a `job_type=analysis` run.

The folder is built next to its destination and swapped in under a file lock, so two analyses into
one `--out` each leave a whole report, and a re-run leaves no stale figures.
"""

import html
import os
import re
import tempfile
import zlib
from dataclasses import dataclass, field
from itertools import zip_longest
from pathlib import Path

import jinja2
import numpy as np
import pandas as pd
from filelock import FileLock
from matplotlib.figure import Figure
from PIL import Image
from plotly.graph_objects import Figure as PlotlyFigure
from plotly.offline import get_plotlyjs

from ae_lab import figures, keys
from ae_lab.analysis import tables
from ae_lab.analysis.baselines import baseline_aurocs
from ae_lab.analysis.runs import (
    ANALYSIS_JOB_TYPE,
    RunData,
    checkpoint_predictions,
    load_runs,
    logger,
    media_files,
)
from ae_lab.errors import AeLabError
from ae_lab.images import to_uint8


@dataclass
class Analysis:
    """Everything the report shows; figures are keyed by their W&B key (`analysis/...`)."""

    run_table: pd.DataFrame
    auroc_table: pd.DataFrame
    score_gaps: pd.DataFrame
    ranking: list[str]
    warnings: list[str]  # for the log and the page: AUROC mismatches, mixed classes, left outs
    best_runs: pd.DataFrame  # the best run of each architecture (rows of `runs`)
    figures: dict[str, PlotlyFigure | Figure]  # Plotly (interactive) or matplotlib (static)
    # Paired bootstrap of the AUROC difference of two runs (tables.auroc_differences).
    differences: pd.DataFrame = field(default_factory=pd.DataFrame)
    # Per class, the AUROC of image statistics that ignore the defect (baselines.baseline_aurocs).
    baselines: pd.DataFrame = field(default_factory=pd.DataFrame)


@dataclass
class LoggedRun:
    mode: str  # online | offline | disabled
    run_dir: Path | None  # the analysis run's folder (offline: sync it with `wandb sync`)
    url: str | None
    run_id: str | None = None  # to read its media back (`ae_lab.notebook.media`)


@dataclass
class AnalysisResult:
    data: RunData
    analysis: Analysis
    index_html: Path
    logged: LoggedRun | None
    report_url: str | None  # the W&B Report's URL, or why none was made


def analyse(data: RunData, n_boot: int = 1000) -> Analysis:
    """All tables, sentences and figures of the report: from the three frames, and from what the
    runs left on disk (their logged media, best checkpoints and test images), each left out with
    a warning where this machine cannot read it."""
    runs, scores, history = data.runs, data.scores, data.history
    auroc = tables.auroc_table(runs, scores)
    gaps = tables.score_gaps(runs, scores)
    ranked = runs.sort_values(keys.TEST_IMAGE_AUROC, ascending=False)
    best = ranked.groupby("model").head(1).sort_values("model")  # per architecture
    title = "Best run per architecture: image score, good vs defect types"
    figs = {
        "analysis/histograms/best_per_architecture": figures.histogram_grid(best, scores, title),
        "analysis/auroc_heatmap_image": figures.auroc_heatmap(auroc),
        "analysis/loss_curves_image/comparacion": figures.loss_curves_comparison(runs, history),
    }
    notes: list[str] = []  # what could not be read back, for the warnings
    own_loss = scores.dropna(subset=["loss"]) if "loss" in scores else scores.iloc[:0]
    for model, sub in runs.groupby("model", sort=True):
        figs[f"analysis/loss_curves_image/{model}"] = figures.loss_curves(runs, history, model)
        mine = own_loss[own_loss["run_id"].isin(sub["run_id"])]  # the runs that logged it
        logged = sub[sub["run_id"].isin(mine["run_id"])].sort_values("loss")
        for cat in sorted(mine["category"].unique()):
            key = f"analysis/error_histograms/{model}/{cat}"
            figs[key] = figures.loss_histograms(mine, logged, cat)
        figs |= reconstructions_by_loss(model, sub, scores, notes)
    figs |= val_reconstructions(data, notes)
    figs |= run_panels(data, ranked.iloc[0], notes)
    sizes = runs["image_size"].dropna()
    baselines, problems = baseline_aurocs(scores, int(sizes.mode()[0]) if len(sizes) else 128)
    return Analysis(
        run_table=tables.run_table(runs, history),
        auroc_table=auroc,
        score_gaps=gaps,
        differences=tables.auroc_differences(runs, scores, n_boot),
        baselines=baselines,
        ranking=tables.ranking(runs, auroc, gaps),
        warnings=[
            *(f"AUROC check: {m}" for m in tables.auroc_mismatches(runs, auroc)),
            *tables.class_warning(runs),
            *notes,
            *problems,
        ],
        best_runs=best,
        figures=figs,
    )


# ---- figures of what the runs left on disk: logged media, checkpoints ---------------------------
def _left_out(notes: list[str], key: str, failed: dict[str, str]) -> None:
    """One warning per figure: what it leaves out, and why for the first of them."""
    if failed:
        name, why = next(iter(failed.items()))
        notes.append(f"{key} leaves out {', '.join(failed)} (e.g. {name}: {why})")


def logged_images(
    data: RunData, wanted: dict[str, tuple[str, str]], notes: list[str], figure: str
) -> dict[str, list[np.ndarray]]:
    """name -> the images (uint8 [H,W,3]) its (run_id, key) logged last, read back from the W&B
    run (its offline folder, or the API); those that cannot be read are noted as left out of
    `figure`."""
    where = {"wandb_dir": data.offline_root} if data.offline_root else {"project": data.project}
    media, failed = {}, {}
    for name, (run_id, key) in wanted.items():
        try:
            files = media_files(run_id, key, **where)
            media[name] = [np.asarray(Image.open(path).convert("RGB")) for path, _ in files]
        except Exception as err:  # no such medium, no run folder, no server: left out
            failed[name] = str(err)
    _left_out(notes, figure, failed)
    return media


def val_reconstructions(data: RunData, notes: list[str]) -> dict[str, Figure]:
    """`analysis/val_reconstructions`: every run's last `val/reconstructions`, read back, one
    tile per run titled with its model and loss: a row per architecture, a column per loss."""
    key, runs = "analysis/val_reconstructions", data.runs
    wanted = {run.label: (run.run_id, keys.VAL_RECONSTRUCTIONS) for run in runs.itertuples()}
    media = logged_images(data, wanted, notes, key)
    cells = {}  # model -> loss -> tiles
    for run in runs[runs["label"].isin(media)].itertuples():
        tile = (f"{run.model} · {figures.loss_name(run.loss)}", media[run.label][-1])
        cells.setdefault(run.model, {}).setdefault(str(run.loss), []).append(tile)
    losses, rows = sorted(runs["loss"].astype(str).unique()), []
    for _, per_loss in sorted(cells.items()):  # a loss with more runs adds rows
        rows += map(list, zip_longest(*(per_loss.get(loss, []) for loss in losses)))
    title = (
        "Reconstrucciones de validación al final del entrenamiento (en cada bloque, las imágenes "
        "originales sobre sus reconstrucciones): una fila por arquitectura, una columna por pérdida"
    )
    return {key: figures.image_montage(rows, title)} if rows else {}


def reconstructions_by_loss(
    model: str, runs: pd.DataFrame, scores: pd.DataFrame, notes: list[str]
) -> dict[str, Figure]:
    """`analysis/test_reconstructions/<model>/{buenas,defectuosas}`: the same 8 good and 8
    defective test images (`tables.comparison_images`) reconstructed by each run of one
    architecture from its best checkpoint, the anomaly maps of both figures on one scale."""
    key, shown = f"analysis/test_reconstructions/{model}", {}
    here = runs["checkpoint"].map(lambda p: isinstance(p, str) and Path(p).is_file())
    failed = {
        run.label: f"its {keys.CHECKPOINT_BEST} {run.checkpoint} is not on this machine"
        for run in runs[~here].itertuples()
    }
    chosen = tables.comparison_images(runs[here], scores) if here.any() else None
    for run in runs[here].sort_values("loss").itertuples():
        try:
            batch, out = checkpoint_predictions(run.checkpoint, list(chosen["path"]))
        except (AeLabError, KeyError, OSError, RuntimeError) as err:  # its data is not here
            failed[run.label] = f"{type(err).__name__}: {err}"
            continue
        shown[figures.loss_name(run.loss)] = (to_uint8(out.recon), out.anomaly_map[:, 0].numpy())
    _left_out(notes, key, failed)
    if not shown:
        return {}
    # One scale for the good and the defective images: a good image's map then looks dark.
    vmax = float(np.quantile(np.stack([maps for _, maps in shown.values()]), 0.999)) or 1.0
    images, masks = to_uint8(batch.image), batch.mask[:, 0].numpy()
    names = (chosen["category"] + "\n" + chosen["defect"].replace("good", "buena")).to_numpy()
    figs = {}
    for part, label in (("buenas", 0), ("defectuosas", 1)):
        rows = (chosen["label"] == label).to_numpy()
        if not rows.any():
            continue
        title = f"Arquitectura {model}: imágenes {part} de prueba reconstruidas por cada pérdida"
        if label == 1:
            title += " (de los tipos de defecto más difíciles de cada clase)"
        models = {name: (recon[rows], maps[rows]) for name, (recon, maps) in shown.items()}
        mask = masks[rows] if label == 1 else None
        figs[f"{key}/{part}"] = figures.reconstruction_comparison(
            images[rows], mask, models, list(names[rows]), vmax, title
        )
    return figs


def run_panels(data: RunData, run: pd.Series, notes: list[str]) -> dict[str, Figure]:
    """`analysis/run_panels`: what the run's W&B page holds, for a reader without a W&B server:
    its media read back by key (titled with it) and its loss curves from the history."""
    cat = data.scores.loc[data.scores["run_id"] == run["run_id"], "category"].min()
    histogram = f"{keys.TEST_SCORE_HISTOGRAM_IMAGES}/{cat}"
    logged_keys = (keys.VAL_RECONSTRUCTIONS, keys.VAL_LATENT_TSNE_IMAGE, keys.TEST_RECONSTRUCTIONS)
    wanted = {key: (run["run_id"], key) for key in (*logged_keys, histogram)}
    media = logged_images(data, wanted, notes, f"analysis/run_panels ({run['label']})")
    if not media:
        return {}
    strips = media.pop(keys.TEST_RECONSTRUCTIONS, [])
    # 4 strips over the list, which runs class by class, good images first: the first of one
    # quarter, the last of the next, so that good and defective images both show.
    step = max(1, len(strips) // 4)
    picked = [i * step + (step - 1) * (i % 2) for i in range(min(4, len(strips)))]
    strips = [(f"{keys.TEST_RECONSTRUCTIONS} [{i}]", strips[i]) for i in picked]
    tile = {key: (key, images[-1]) for key, images in media.items()}
    own = data.runs[data.runs["run_id"] == run["run_id"]]
    curves = figures.figure_array(figures.loss_curves(own, data.history, run["model"]))
    rows = [
        [tile.get(keys.VAL_RECONSTRUCTIONS), tile.get(keys.VAL_LATENT_TSNE_IMAGE)],
        strips[:2],
        strips[2:],
        [tile.get(histogram), ("historial: train/loss, val/loss, val/l1", curves)],
    ]
    title = (
        f"Lo que guarda en W&B la ejecución {run['label']}, la de mayor AUROC: cada medio, "
        "leído de vuelta, con su clave"
    )
    return {"analysis/run_panels": figures.image_montage([r for r in rows if any(r)], title)}


# ---- the report folder --------------------------------------------------------------------------
TEMPLATE = Path(__file__).with_name("index.html.j2")


def slug(key: str) -> str:
    """`analysis/histograms/ae-l1-z32` -> `histograms__ae-l1-z32` (a safe file name: letters, any
    script, digits, `_.-`; never a `/`, so never outside its folder). Keys that had to change get
    a hash, so that `a<b` and `a>b` do not write one file."""
    flat = key.removeprefix("analysis/").replace("/", "__")
    safe = re.sub(r"[^\w.-]+", "_", flat)
    return safe if safe == flat else f"{safe}-{zlib.crc32(key.encode()):08x}"


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")  # a spreadsheet runs such a cell as a formula


def csv_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with every text cell and header that starts like a formula (`=`, `+`, `-`, `@`, tab,
    CR) prefixed with `'`, so that a run name such as `=HYPERLINK(...)` opens in a spreadsheet as
    text (CSV injection); numbers, negative ones included, stay numbers."""

    def text(value):
        return f"'{value}" if isinstance(value, str) and value.startswith(FORMULA_START) else value

    return frame.rename(columns=text).map(text)


def tables_of(a: Analysis) -> dict[str, pd.DataFrame]:
    """The tables as plain frames (the AUROC table's class and defect become columns)."""
    return dict(
        run_table=a.run_table,
        auroc_table=a.auroc_table.reset_index(),
        score_gaps=a.score_gaps,
        differences=a.differences,
        baselines=a.baselines,
    )


def write_report(analysis: Analysis, data: RunData, out_dir: str | Path) -> Path:
    """Write the tables (CSV, Markdown), the figures (PNG; Plotly as HTML with plotly.js next to
    them, so the report works offline) and `index.html` into `out_dir`, replacing it whole."""
    out = Path(out_dir).absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    # Built next to `out` and swapped in whole; the old folder goes with the work folder.
    with tempfile.TemporaryDirectory(prefix=f".{out.name}-", dir=out.parent) as work:
        tmp = Path(work) / "new"
        (tmp / "figures").mkdir(parents=True)
        (tmp / "plotly.min.js").write_text(get_plotlyjs(), encoding="utf-8")
        for name, frame in tables_of(analysis).items():
            csv_safe(frame).to_csv(tmp / f"{name}.csv", index=False)
            (tmp / f"{name}.md").write_text(frame.to_markdown(floatfmt=".3f") + "\n")
        (tmp / "ranking.md").write_text("".join(f"- {line}\n" for line in analysis.ranking))
        for key, fig in analysis.figures.items():
            path = tmp / "figures" / slug(key)  # a slug may hold dots: no `with_suffix`
            if isinstance(fig, Figure):
                fig.savefig(f"{path}.png")
            else:
                fig.write_html(f"{path}.html", include_plotlyjs="../plotly.min.js")
        histograms = {}  # per class, of each architecture's best run: a panel per defect type
        for label, run_id in analysis.best_runs[["label", "run_id"]].itertuples(index=False):
            for cat, part in data.scores[data.scores["run_id"] == run_id].groupby("category"):
                png = f"figures/histograms__{slug(label)}__{slug(cat)}.png"
                histograms.setdefault(label, {})[cat] = png
                figures.defect_histograms(part, cat).savefig(tmp / png)
        intervals = tables.auroc_intervals(data.runs, data.scores)
        template = jinja2.Template(TEMPLATE.read_text(encoding="utf-8"), autoescape=True)
        page = template.render(
            data=data, analysis=analysis, intervals=intervals, histograms=histograms
        )
        (tmp / "index.html").write_text(page, encoding="utf-8")
        with FileLock(out.parent / f".{out.name}.lock"):  # swap the finished folder in
            if out.exists():
                out.rename(Path(work) / "old")
            tmp.rename(out)
    return out / "index.html"


# ---- W&B ----------------------------------------------------------------------------------------
def wandb_mode(data: RunData) -> str:
    """WANDB_MODE wins (`load_runs` sets it offline without credentials); else offline for
    offline runs, online for runs read from the API."""
    return os.environ.get("WANDB_MODE") or ("offline" if data.offline_root else "online")


def log_analysis_run(analysis: Analysis, data: RunData, report_dir: Path) -> LoggedRun:
    """A new run in the same project/group: figures, tables, ranking, and the report folder as an
    artifact. Offline runs go next to the analysed ones (`<offline_root>/wandb/`)."""
    import wandb

    mode = wandb_mode(data)
    payload = {  # the report's PNG files: rendering a figure once is a third of the analysis
        key: wandb.Image(str(report_dir / "figures" / f"{slug(key)}.png"))
        if isinstance(fig, Figure)
        else wandb.Plotly(fig)
        for key, fig in analysis.figures.items()
    }
    for name, frame in tables_of(analysis).items():
        payload[f"analysis/{name}"] = wandb.Table(dataframe=frame)
    ranking = "<ul>" + "".join(f"<li>{html.escape(line)}</li>" for line in analysis.ranking)
    payload["analysis/ranking"] = wandb.Html(ranking + "</ul>", inject=False, data_is_not_path=True)
    with wandb.init(
        project=data.project,
        group=data.group,
        job_type=ANALYSIS_JOB_TYPE,
        name=f"analysis-{data.group or data.project}",
        mode=mode,
        dir=str(data.offline_root) if mode == "offline" and data.offline_root else None,
        config={"source": data.source, "runs": list(data.runs["label"]), "skipped": data.skipped},
    ) as run:
        run.log(payload)
        run.summary["analysis/n_runs"] = len(data.runs)
        artifact = wandb.Artifact(f"analysis-report-{data.project}", type="analysis-report")
        artifact.add_dir(str(report_dir))  # inside the run: W&B's own log, not stderr
        run.log_artifact(artifact)
        run_dir = Path(run.dir).parent if mode != "disabled" else None
        return LoggedRun(mode, run_dir, run.url if mode == "online" else None, run.id)


def create_wandb_report(analysis: Analysis, data: RunData, entity: str | None) -> str:
    """Save a W&B Report (title, ranking, the loss curves of the analysed runs); needs W&B online
    and `wandb-workspaces`. Returns its URL or why none was made."""
    if wandb_mode(data) != "online":
        return "--report needs W&B online (credentials and no WANDB_MODE=offline/--offline-dir): skipped."
    try:
        import wandb
        import wandb_workspaces.reports.v2 as wr

        entity = entity or wandb.Api().default_entity
        filters = f"JobType != '{ANALYSIS_JOB_TYPE}'"
        if data.group:
            filters = f"Config('logger.group') == '{data.group}' and " + filters
        curves = [  # train and val loss in one panel; val/l1 compares across losses
            wr.LinePlot(title="train/loss y val/loss", x="epoch", y=["train/loss", "val/loss"]),
            wr.LinePlot(title="val/l1", x="epoch", y=["val/l1"]),
        ]
        runset = wr.Runset(entity=entity, project=data.project, filters=filters)
        title = f"ae-lab analysis: {data.project}" + (f" / {data.group}" if data.group else "")
        blocks = [
            wr.UnorderedList(items=list(analysis.ranking)),
            wr.PanelGrid(runsets=[runset], panels=curves),
        ]
        report = wr.Report(project=data.project, entity=entity, title=title, blocks=blocks)
        report.save()
    except ImportError:
        return "--report needs `pip install wandb-workspaces` (extra `report`): skipped."
    except Exception as err:  # network or permission: the local report stands
        logger.warning(f"saving the W&B Report failed: {err}")
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
        logger.warning(warning)
    index = write_report(analysis, data, out_dir or Path("reports") / project)
    logged = log_analysis_run(analysis, data, index.parent) if log_to_wandb else None
    report_url = create_wandb_report(analysis, data, entity) if report else None
    return AnalysisResult(data, analysis, index, logged, report_url)
