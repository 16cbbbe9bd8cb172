"""Log the analysis to W&B: a run with `job_type="analysis"`, and optionally a W&B Report."""

import os
from dataclasses import dataclass
from pathlib import Path

import plotly.graph_objects as go

from ae_lab.analysis.build import Analysis
from ae_lab.analysis.sources import ANALYSIS_JOB_TYPE, RunData, log
from ae_lab.figures.static import wandb_image
from ae_lab.tracking.mode import has_wandb_credentials

REPORT_ARTIFACT_TYPE = "analysis-report"


@dataclass
class LoggedRun:
    mode: str  # online | offline | disabled
    run_dir: Path | None  # the analysis run's folder (offline: sync it with `wandb sync`)
    url: str | None
    run_id: str | None = None  # to read its media back (`ae_lab.report.wandb_media`)


def wandb_mode(data: RunData) -> str:
    """WANDB_MODE wins; else offline for offline runs or without credentials, like training."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if data.offline_root is not None or not has_wandb_credentials():
        return "offline"
    return "online"


def _media(fig: go.Figure):
    import wandb

    from ae_lab.figures.interactive import plain_figure

    try:  # plain lists: W&B's chart panel shows plotly 7's compressed arrays empty (wandb#9563)
        return wandb.Plotly(plain_figure(fig))
    except Exception:  # wandb.Plotly rejects some figure types; the HTML always works
        return wandb.Html(fig.to_html(include_plotlyjs="cdn"), data_is_not_path=True)


def _group(data: RunData) -> str | None:
    groups = data.runs["group"].dropna().unique()
    return data.group or (str(groups[0]) if len(groups) == 1 else None)


def log_analysis_run(analysis: Analysis, data: RunData, report_dir: Path) -> LoggedRun:
    """A new run in the same project/group: figures, tables, ranking, and the report folder as an
    artifact. Offline runs go next to the analysed ones (`<offline_root>/wandb/`)."""
    import wandb

    mode = wandb_mode(data)
    use_offline_root = mode == "offline" and data.offline_root is not None
    run = wandb.init(
        project=data.project,
        group=_group(data),
        job_type=ANALYSIS_JOB_TYPE,
        name=f"analysis-{_group(data) or data.project}",
        mode=mode,
        dir=str(data.offline_root) if use_offline_root else None,
        config={"source": data.source, "runs": list(data.runs["label"]), "skipped": data.skipped},
    )
    payload = {key: _media(fig) for key, fig in analysis.figures.items()}
    payload |= {key: wandb_image(fig) for key, fig in analysis.images.items()}
    payload["analysis/run_table"] = wandb.Table(dataframe=analysis.run_table)
    payload["analysis/auroc_table"] = wandb.Table(dataframe=analysis.auroc_table.reset_index())
    payload["analysis/score_gaps"] = wandb.Table(dataframe=analysis.score_gaps)
    items = "".join(f"<li>{line}</li>" for line in analysis.ranking)
    payload["analysis/ranking"] = wandb.Html(
        f"<ul>{items}</ul>", inject=False, data_is_not_path=True
    )
    run.log(payload)
    run.summary["analysis/n_runs"] = len(data.runs)
    artifact = wandb.Artifact(f"analysis-report-{data.project}", type=REPORT_ARTIFACT_TYPE)
    artifact.add_dir(str(report_dir))
    run.log_artifact(artifact)
    run_dir = Path(run.dir).parent if mode != "disabled" else None
    url = run.url if mode == "online" else None
    run_id = run.id
    run.finish()
    return LoggedRun(mode=mode, run_dir=run_dir, url=url, run_id=run_id)


def report_blocks(analysis: Analysis, data: RunData, entity: str):
    """The W&B Report: ranking, loss curves of the group's runs, the analysis tables."""
    import wandb_workspaces.reports.v2 as wr

    group = _group(data)
    filters = f"JobType != '{ANALYSIS_JOB_TYPE}'"
    if group:
        filters = f"Config('logger.group') == '{group}' and " + filters
    runset = wr.Runset(entity=entity, project=data.project, filters=filters)
    curves = [  # train and val loss in one panel; val/l1 compares across losses
        wr.LinePlot(title="train/loss y val/loss", x="epoch", y=["train/loss", "val/loss"]),
        wr.LinePlot(title="val/l1", x="epoch", y=["val/l1"]),
    ]
    tables = [wr.WeavePanelSummaryTable(table_name=k) for k in ("analysis/run_table",)]
    tables += [wr.WeavePanelSummaryTable(table_name="analysis/auroc_table")]
    return [
        wr.H1(f"ae-lab analysis: {data.project}" + (f" / {group}" if group else "")),
        wr.UnorderedList(items=list(analysis.ranking)),
        wr.PanelGrid(runsets=[runset], panels=curves),
        wr.PanelGrid(runsets=[wr.Runset(entity=entity, project=data.project)], panels=tables),
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
    except Exception as err:
        log.warning(f"saving the W&B Report failed: {err}")
        return f"W&B Report not saved: {err}"
    return report.url
