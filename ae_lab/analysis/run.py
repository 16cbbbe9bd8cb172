"""`run_analysis`, what `analyze.py` calls: load the runs, analyse them, write the report folder,
log it to W&B."""

from dataclasses import dataclass
from pathlib import Path

from ae_lab.analysis.build import Analysis, analyse
from ae_lab.analysis.load import load_runs
from ae_lab.analysis.sources import RunData, log
from ae_lab.analysis.wandb_log import LoggedRun, create_wandb_report, log_analysis_run
from ae_lab.report.html import write_report


@dataclass
class AnalysisResult:
    data: RunData
    analysis: Analysis
    index_html: Path
    logged: LoggedRun | None
    report_url: str | None  # the W&B Report's URL, or why none was made


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
    for problem in analysis.mismatches:
        log.warning(f"AUROC check: {problem}")
    index = write_report(analysis, data, out_dir or Path("reports") / project)
    logged = log_analysis_run(analysis, data, index.parent) if log_to_wandb else None
    report_url = create_wandb_report(analysis, data, entity) if report else None
    return AnalysisResult(data, analysis, index, logged, report_url)
