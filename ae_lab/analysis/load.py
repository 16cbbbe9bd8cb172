"""`load_runs`: the analysis's one entry to the runs, from the W&B API or offline run folders.

The dispatcher sits apart from the run types (`sources`) so that the two sources import those
types and nothing imports back: sources <- source_api, source_offline <- load.
"""

import os
from pathlib import Path

from ae_lab.analysis import source_api, source_offline
from ae_lab.analysis.sources import RunData
from ae_lab.tracking.mode import has_wandb_credentials


def load_runs(
    project: str,
    entity: str | None = None,
    group: str | None = None,
    sweep: str | None = None,
    offline_dir: str | Path | None = None,
) -> RunData:
    """Offline folders when `offline_dir` is given or W&B is offline/without credentials, else the API."""
    mode = os.environ.get("WANDB_MODE", "")
    if (
        offline_dir is None
        and mode not in ("offline", "disabled", "dryrun")
        and has_wandb_credentials()
    ):
        return source_api.load_api_runs(project, entity=entity, group=group, sweep=sweep)
    root = offline_dir or source_offline.default_offline_dir()
    return source_offline.load_offline_runs(project, root, group=group, sweep=sweep)
