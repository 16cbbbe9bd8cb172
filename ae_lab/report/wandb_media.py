"""Find the media a W&B run logged (images, Plotly figures, tables) as local files.

Offline, the files already lie in the run folder (`wandb/offline-run-*-<id>/files/media/...`);
online, they are downloaded through the API into a cache folder. Either way the run's summary
names them: `<key>.path` for one file, `<key>.filenames` for a list (e.g. `test/reconstructions`).
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from ae_lab.analysis.source_offline import find_run_dirs, raw_run_from_records, read_records
from ae_lab.errors import AeLabError
from ae_lab.errors import flatten


@dataclass
class MediaRun:
    """One run whose media can be fetched: its flat summary and where its files are."""

    run_id: str
    name: str
    summary: dict[str, Any]
    folder: Path | None = None  # offline run folder
    api_run: Any = None  # a `wandb.apis.public.Run` (online)
    cache_dir: Path | None = None  # where online files are downloaded


def offline_run_dir(offline_dir: str | Path, run_id: str) -> Path:
    """The run folder of `run_id` under a `wandb/` folder (or the folder holding it)."""
    for folder in find_run_dirs(offline_dir):
        if folder.name.endswith(f"-{run_id}"):
            return folder
    raise AeLabError(
        f"No offline W&B run folder for run id '{run_id}' under '{offline_dir}'. Point the "
        "offline folder (WANDB_DIR/wandb) to where the runs were written."
    )


def open_offline_run(offline_dir: str | Path, run_id: str) -> MediaRun:
    """Read the run's log with W&B's own reader and keep its final summary."""
    folder = offline_run_dir(offline_dir, run_id)
    raw = raw_run_from_records(read_records(next(folder.glob("run-*.wandb"))), folder)
    return MediaRun(run_id, raw.name, raw.summary, folder=folder)


def open_api_run(path: str, cache_dir: str | Path, api: Any = None) -> MediaRun:
    """`path` is `entity/project/run_id`; files are downloaded under `cache_dir/<run_id>/`."""
    if api is None:
        import wandb

        api = wandb.Api()
    run = api.run(path)
    summary = flatten(json.loads(json.dumps(dict(run.summary.items()), default=_plain)))
    return MediaRun(run.id, run.name, summary, api_run=run, cache_dir=Path(cache_dir) / run.id)


def _plain(value: Any) -> Any:
    # W&B's nested summary values are dict-like objects that json cannot serialise directly.
    return dict(value.items()) if hasattr(value, "items") else str(value)


def media_names(summary: dict[str, Any], key: str) -> list[str]:
    """Paths (relative to the run's `files/`) of the media logged last at `key`; [] if none."""
    names = summary.get(f"{key}.filenames")
    if isinstance(names, list):
        return [str(n) for n in names]
    name = summary.get(f"{key}.path")
    return [str(name)] if isinstance(name, str) else []


def media_captions(run: MediaRun, key: str) -> list[str]:
    """The captions logged with the media at `key` (one per file; empty strings if none)."""
    captions = run.summary.get(f"{key}.captions")
    if isinstance(captions, list):
        return [str(c) for c in captions]
    caption = run.summary.get(f"{key}.caption")
    return [str(caption) if caption is not None else ""] * len(media_names(run.summary, key))


def media_files(run: MediaRun, key: str) -> list[Path]:
    """Local files of the media logged last at `key` (downloaded first for an online run)."""
    names = media_names(run.summary, key)
    if not names:
        logged = sorted({k.split(".")[0] for k in run.summary if "." in k})
        raise AeLabError(
            f"Run {run.name} ({run.run_id}) has no media at `{key}` in its summary; it has: "
            f"{', '.join(logged) or 'none'}. Was the run trained with the W&B logger and tested?"
        )
    if run.folder is not None:
        files = [run.folder / "files" / n for n in names]
    else:
        assert run.api_run is not None and run.cache_dir is not None
        for name in names:
            run.api_run.file(name).download(root=str(run.cache_dir), exist_ok=True).close()
        files = [run.cache_dir / n for n in names]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise AeLabError(
            f"Run {run.name}: the media file(s) {missing} named at `{key}` are missing."
        )
    return files


def load_plotly(path: str | Path) -> go.Figure:
    """A `wandb.Plotly` file (`*.plotly.json`) back to a Plotly figure."""
    return go.Figure(json.loads(Path(path).read_text()))


def load_table(path: str | Path) -> pd.DataFrame:
    """A `wandb.Table` file (`*.table.json`) to a DataFrame."""
    obj = json.loads(Path(path).read_text())
    return pd.DataFrame(obj.get("data", []), columns=obj.get("columns", []))
