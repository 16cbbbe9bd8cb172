"""Read a W&B run's media back as files, and show images in a notebook.

The run's summary names the files logged last at each key (`<key>.path`, or `<key>.filenames` and
`<key>.captions` for a list). Offline, the summary is replayed from the run's log by the reader
of the analysis (`ae_lab.analysis.runs.offline_run`) and the files lie in the run folder
(`wandb/offline-run-*-<id>/files/`); online, the run comes from the API and its files are
downloaded into `reports/notebook/media/<id>/`.
"""

import functools
import io
from pathlib import Path

import numpy as np
from IPython.display import Image, Markdown, display
from PIL import Image as PILImage

from ae_lab.analysis.runs import find_run_dirs, offline_run
from ae_lab.config import flatten
from ae_lab.errors import AeLabError

MAX_PNG_BYTES = 150_000  # larger images are embedded as JPEG: the committed notebook stays small


@functools.cache
def open_run(run_id: str, wandb_dir: Path | None = None, project: str | None = None):
    """(flat summary, files folder or API run) of `run_id`: offline under `wandb_dir` (the folder
    holding `wandb/`), else through the W&B API in `project`."""
    if project is not None:
        import wandb

        run = wandb.Api().run(f"{project}/{run_id}")
        return flatten(run.summary_metrics), run
    folder = next((d for d in find_run_dirs(wandb_dir) if d.name.endswith(f"-{run_id}")), None)
    if folder is None:
        raise AeLabError(
            f"No offline W&B run folder for run '{run_id}' under {wandb_dir}/wandb: set WANDB_DIR "
            "(the notebook's WANDB_DIR parameter) to the folder the runs were written to."
        )
    read = offline_run(folder)
    if isinstance(read, str):  # why the log cannot be read
        raise AeLabError(read)
    return read[1].summary, folder / "files"


def media_files(
    run_id: str, key: str, wandb_dir: Path | None = None, project: str | None = None
) -> list[tuple[Path, str]]:
    """(file, caption) of each medium the run logged last at `key`."""
    summary, where = open_run(run_id, wandb_dir, project)
    names = summary.get(f"{key}.filenames") or [summary.get(f"{key}.path")]
    if None in names:
        logged = sorted(k.rsplit(".", 1)[0] for k in summary if k.endswith((".path", ".filenames")))
        raise AeLabError(
            f"Run {run_id} has no media at `{key}` in its summary; it has: "
            f"{', '.join(logged) or 'none'}. Was the run trained with the W&B logger and tested?"
        )
    captions = summary.get(f"{key}.captions") or [summary.get(f"{key}.caption", "")] * len(names)
    if not isinstance(where, Path):  # online: download into the notebook's media cache
        run, where = where, Path("reports/notebook/media") / run_id
        for name in names:
            run.file(name).download(root=str(where), exist_ok=True).close()
    return [(where / n, c) for n, c in zip(names, captions, strict=True)]


def show_image(image: np.ndarray | str | Path, caption: str = "") -> None:
    """Display a uint8 array or an image file: PNG, or JPEG when the PNG exceeds MAX_PNG_BYTES."""
    img = PILImage.fromarray(image) if isinstance(image, np.ndarray) else PILImage.open(image)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    if buf.tell() > MAX_PNG_BYTES:
        buf = io.BytesIO()
        img.convert("RGB").save(buf, format="JPEG", quality=85)
    display(Image(data=buf.getvalue()))  # IPython tells PNG from JPEG by their first bytes
    if caption:
        display(Markdown(f"<sub>{caption}</sub>"))
