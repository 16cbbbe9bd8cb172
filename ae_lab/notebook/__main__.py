"""Execute the hand-in notebook into a fresh copy and export it to Markdown.

    python -m ae_lab.notebook notebooks/tarea05.py                         # default size
    python -m ae_lab.notebook notebooks/tarea05.py --smallest              # CI size, ~3 min
    python -m ae_lab.notebook notebooks/tarea05.py -p EPOCHS 5 -p CATEGORIES '[screw]'
    python -m ae_lab.notebook notebooks/tarea05.py --out notebooks/tarea05.ipynb   # commit

The cells come from the jupytext percent script `<name>.py` (given `<name>.ipynb`, from the script
next to it). `-p NAME VALUE` (VALUE read as YAML) replaces a value of the `parameters` cell
(papermill's convention). The Markdown export lands next to the executed notebook: `<name>.md`
plus its images in `<name>_files/`.
"""

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

import jupytext
import papermill
import yaml
from papermill.exceptions import PapermillExecutionError

from ae_lab.errors import AeLabError, error_line

# Tiny grid for CI: 2 classes, 64 px, a small net, 1 short epoch per run, trained in the notebook
# (9 runs), no real images.
SMALLEST = {
    "RUN_GRIDS": True,
    "REAL_GROUP": None,
    "SYN_GROUP": "nb-smallest",
    "SYN_OVERRIDES": [
        "data.root=.cache/ae_lab/synthetic_nb_smallest",
        "data.categories=[cable,screw]",
        "data.generate.n_train=12",
        "data.generate.n_test=10",
        "data.generate.image_size=64",
        "data.image_size=64",
        "data.batch_size=8",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "model.latent_dim=16",
        "model.net.base_channels=8",
        "model.net.depth=3",
        "media.tsne_test=false",
    ],
}
# Markdown (tables, text) first, then images, then plain text: no raw HTML in the export.
MARKDOWN_PRIORITY = ["text/markdown", "image/png", "image/jpeg", "text/plain"]


def parse_parameters(pairs: list[list[str]]) -> dict:
    """`[["EPOCHS", "5"], ["CATEGORIES", "[screw]"]]` -> `{"EPOCHS": 5, "CATEGORIES": ["screw"]}`."""
    out = {}
    for name, text in pairs:
        try:
            out[name] = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise AeLabError(f"-p {name} {text!r}: the value is not valid YAML ({err}).") from err
    return out


def execute(notebook: Path, out: Path, parameters: dict) -> None:
    """Run every cell with papermill in the notebook's folder; on an error, raise AeLabError naming
    the cell (the partly executed copy stays at `out`)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    script = notebook.with_suffix(".py")
    try:
        papermill.execute_notebook(
            jupytext.read(script if script.is_file() else notebook),
            str(out),
            parameters=parameters,
            cwd=str(notebook.resolve().parent),
            kernel_name="python3",
            progress_bar=False,
        )
    except PapermillExecutionError as err:
        first = next((ln.strip() for ln in err.source.splitlines() if ln.strip()), "")
        raise AeLabError(
            f"Notebook cell {err.cell_index} (starting `{first[:80]}`) raised {err.ename}: "
            f"{err.evalue}. The partly executed notebook, with the traceback under that cell, is "
            f"at {out}."
        ) from None


def export_markdown(executed: Path) -> Path:
    """`jupyter nbconvert --to markdown`: `<name>.md` and `<name>_files/` next to `executed`; the
    folder is emptied first, so it holds only the images the new Markdown references."""
    shutil.rmtree(executed.parent / f"{executed.stem}_files", ignore_errors=True)
    priority = f"--NbConvertBase.display_data_priority={MARKDOWN_PRIORITY!r}"
    # The cells tagged hide-input (folded in Jupyter) show only their output in the export too.
    hide = "--TagRemovePreprocessor.remove_input_tags=hide-input"
    cmd = [sys.executable, "-m", "nbconvert", "--to", "markdown", str(executed), priority, hide]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise AeLabError(f"Markdown export failed ({' '.join(cmd)}): {proc.stderr.strip()[-800:]}")
    return executed.with_suffix(".md")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ae_lab.notebook", description=__doc__.split("\n")[0]
    )
    parser.add_argument("notebook", type=Path)
    parser.add_argument("--out", type=Path, default=Path("reports/notebook/tarea05.executed.ipynb"))
    parser.add_argument(
        "-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE")
    )
    parser.add_argument("--smallest", action="store_true", help="the tiny CI size (~3 minutes)")
    parser.add_argument("--no-markdown", action="store_true", help="skip the Markdown export")
    args = parser.parse_args(argv)
    try:
        if not args.notebook.is_file():
            raise AeLabError(f"Notebook not found: {args.notebook} (e.g. notebooks/tarea05.py).")
        params = (SMALLEST if args.smallest else {}) | parse_parameters(args.parameter)
        start = time.perf_counter()
        execute(args.notebook, args.out, params)
        seconds = time.perf_counter() - start
        print(f"[ae-lab] executed {args.notebook} -> {args.out} in {seconds:.0f} s")
        if not args.no_markdown:
            print(f"[ae-lab] Markdown export: {export_markdown(args.out)}")
    except AeLabError as err:
        error_line(str(err))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
