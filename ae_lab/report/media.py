"""Read a W&B run's media back as files, and show images in a notebook.

The run's summary names the files logged last at each key (`path`, or `filenames` and `captions`
for a list). Offline, the files lie in the run folder (`wandb/offline-run-*-<id>/files/`) and the
summary is read with W&B's own CLI (`wandb leet inspect --summary --json`); online, the run comes
from the API and its files are downloaded into `reports/notebook/media/<id>/`.
"""

import functools
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from IPython.display import Image, Markdown, display
from PIL import Image as PILImage

from ae_lab.errors import AeLabError

MAX_PNG_BYTES = 150_000  # larger images are embedded as JPEG: the committed notebook stays small


@functools.cache
def open_run(run_id: str, wandb_dir: Path | None = None, project: str | None = None):
    """(summary, files folder or API run) of `run_id`: offline under `wandb_dir` (the folder
    holding `wandb/`), else through the W&B API in `project`."""
    if project is not None:
        import wandb

        run = wandb.Api().run(f"{project}/{run_id}")
        plain = json.dumps(dict(run.summary), default=lambda v: dict(v.items()))
        return json.loads(plain), run
    folder = next(Path(wandb_dir, "wandb").glob(f"offline-run-*-{run_id}"), None)
    if folder is None:
        raise AeLabError(
            f"No offline W&B run folder for run '{run_id}' under {wandb_dir}/wandb: set WANDB_DIR "
            "(the notebook's WANDB_DIR parameter) to the folder the runs were written to."
        )
    cmd = [sys.executable, "-m", "wandb", "leet", "inspect", "--summary", "--json", str(folder)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise AeLabError(f"W&B could not read the run folder {folder}: {proc.stderr.strip()}")
    return json.loads(proc.stdout)["summary"], folder / "files"


def media_files(
    run_id: str, key: str, wandb_dir: Path | None = None, project: str | None = None
) -> list[tuple[Path, str]]:
    """(file, caption) of each medium the run logged last at `key`."""
    summary, where = open_run(run_id, wandb_dir, project)
    media = summary.get(key)
    if not isinstance(media, dict):
        logged = sorted(k for k, v in summary.items() if isinstance(v, dict))
        raise AeLabError(
            f"Run {run_id} has no media at `{key}` in its summary; it has: "
            f"{', '.join(logged) or 'none'}. Was the run trained with the W&B logger and tested?"
        )
    names = media.get("filenames") or [media["path"]]
    captions = media.get("captions") or [media.get("caption", "")] * len(names)
    if isinstance(where, Path):
        return [(where / n, c) for n, c in zip(names, captions, strict=True)]
    cache = Path("reports/notebook/media") / run_id
    for name in names:
        where.file(name).download(root=str(cache), exist_ok=True).close()
    return [(cache / n, c) for n, c in zip(names, captions, strict=True)]


def show_image(image: np.ndarray | str | Path, caption: str = "") -> None:
    """Display a uint8 array or an image file: PNG, or JPEG when the PNG exceeds MAX_PNG_BYTES."""
    img = PILImage.fromarray(image) if isinstance(image, np.ndarray) else PILImage.open(image)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    fmt = "png"
    if buf.tell() > MAX_PNG_BYTES:
        buf, fmt = io.BytesIO(), "jpeg"
        img.convert("RGB").save(buf, format="JPEG", quality=85)
    display(Image(data=buf.getvalue(), format=fmt))
    if caption:
        display(Markdown(f"<sub>{caption}</sub>"))
