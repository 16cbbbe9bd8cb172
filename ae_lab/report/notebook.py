"""Execute the hand-in notebook into a fresh copy and export it to Markdown.

    python -m ae_lab.report.notebook notebooks/tarea05.py                         # default size
    python -m ae_lab.report.notebook notebooks/tarea05.ipynb --smallest           # CI size, ~2-3 min
    python -m ae_lab.report.notebook notebooks/tarea05.py -p EPOCHS 5 -p CATEGORIES '[screw]'
    python -m ae_lab.report.notebook notebooks/tarea05.py --out notebooks/tarea05.ipynb   # commit

The source is the jupytext percent script `notebooks/tarea05.py`, paired with `tarea05.ipynb`:
given either, the cells come from the `.py` when it exists (the `.ipynb` holds the outputs).

Parameters (`-p NAME VALUE`, VALUE read as YAML) replace the notebook's `parameters` cell
(papermill's convention). The Markdown export (`jupyter nbconvert --to markdown`) lands next to
the executed notebook: `<name>.md` plus its images in `<name>_files/`.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from ae_lab.errors import AeLabError

DEFAULT_OUT = Path("reports/notebook/tarea05.executed.ipynb")
# Tiny grid for CI: 2 classes, 64 px, a small net, 1 short epoch per run (8 runs, 2 at a time).
SMALLEST: dict[str, Any] = {
    "CATEGORIES": ["cable", "screw"],
    "N_TRAIN": 12,
    "N_TEST": 10,
    "SOURCE_SIZE": 64,
    "IMAGE_SIZE": 64,
    "EPOCHS": 1,
    "BATCH_SIZE": 8,
    "EXTRA_OVERRIDES": [
        "model.latent_dim=16",
        "model.net.base_channels=8",
        "model.net.depth=3",
        "trainer.limit_train_batches=2",
        "media.tsne_test=false",
    ],
}
# Markdown (generated tables and text) first, then images, then plain text: the raw HTML of
# Plotly outputs (a script tag that GitHub strips) never reaches the Markdown export.
MARKDOWN_PRIORITY = ["text/markdown", "image/png", "image/jpeg", "image/svg+xml", "text/plain"]


def parse_parameters(pairs: list[list[str]]) -> dict[str, Any]:
    """`[["EPOCHS", "5"], ["CATEGORIES", "[screw]"]]` -> `{"EPOCHS": 5, "CATEGORIES": ["screw"]}`."""
    out: dict[str, Any] = {}
    for name, text in pairs:
        try:
            out[name] = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise AeLabError(f"-p {name} {text!r}: the value is not valid YAML ({err}).") from err
    return out


def source_cells(notebook: Path):
    """The notebook to execute: its jupytext source `<name>.py` when there is one, else itself."""
    import jupytext
    import nbformat

    script = notebook.with_suffix(".py")
    if script.is_file():
        return jupytext.read(script)
    return nbformat.read(notebook, as_version=4)


def execute(notebook: Path, out: Path, parameters: dict[str, Any], cwd: Path) -> None:
    """Run every cell with papermill (nbclient if papermill is missing); raise AeLabError naming
    the failing cell, the partly executed copy is kept at `out` for inspection."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if notebook.suffix == ".py" or notebook.with_suffix(".py").is_file():
        import nbformat

        # papermill reads .ipynb files: the jupytext source, converted next to the output.
        source = Path(tempfile.mkdtemp(prefix="ae_lab_nb_")) / f"{out.stem}.ipynb"
        nbformat.write(source_cells(notebook), source)
        notebook = source
    try:
        import papermill
    except ImportError:
        _execute_nbclient(notebook, out, parameters, cwd)
        return
    from papermill.exceptions import PapermillExecutionError

    try:
        papermill.execute_notebook(
            str(notebook), str(out), parameters=parameters or None, cwd=str(cwd),
            kernel_name="python3", progress_bar=False,
        )  # fmt: skip
    except PapermillExecutionError as err:
        raise AeLabError(
            _cell_error(err.cell_index, err.source, f"{err.ename}: {err.evalue}", out)
        ) from None


def _execute_nbclient(notebook: Path, out: Path, parameters: dict[str, Any], cwd: Path) -> None:
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(notebook, as_version=4)
    if parameters:
        index = next(
            (i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])), -1
        )
        lines = [f"{k} = {v!r}" for k, v in parameters.items()]
        cell = nbformat.v4.new_code_cell("# Parameters\n" + "\n".join(lines))
        cell.metadata["tags"] = ["injected-parameters"]
        nb.cells.insert(index + 1, cell)
    client = NotebookClient(nb, kernel_name="python3", resources={"metadata": {"path": str(cwd)}})
    try:
        client.execute()
    except CellExecutionError as err:
        failed = next(
            (i for i, c in enumerate(nb.cells) if any(o.get("output_type") == "error" for o in c.get("outputs", []))),
            -1,
        )  # fmt: skip
        source = nb.cells[failed].source if failed >= 0 else ""
        raise AeLabError(_cell_error(failed, source, f"{err.ename}: {err.evalue}", out)) from None
    finally:
        nbformat.write(nb, out)


def _cell_error(index: int, source: str, error: str, out: Path) -> str:
    first = next((ln.strip() for ln in source.splitlines() if ln.strip()), "")
    return (
        f"Notebook cell {index} (starting `{first[:80]}`) raised {error}. The partly executed "
        f"notebook, with the traceback under that cell, is at {out}."
    )


def export_markdown(executed: Path) -> Path:
    """`jupyter nbconvert --to markdown`: `<name>.md` and `<name>_files/` next to `executed`."""
    cmd = [
        sys.executable, "-m", "nbconvert", "--to", "markdown", str(executed),
        f"--NbConvertBase.display_data_priority={MARKDOWN_PRIORITY!r}",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise AeLabError(f"Markdown export failed ({' '.join(cmd)}): {proc.stderr.strip()[-800:]}")
    return executed.with_suffix(".md")


def repo_root(notebook: Path) -> Path:
    """The folder holding train.py and conf/, above the notebook."""
    for folder in notebook.resolve().parents:
        if (folder / "train.py").is_file() and (folder / "conf").is_dir():
            return folder
    raise AeLabError(f"{notebook} is not inside the ae-lab repository (no train.py above it).")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ae_lab.report.notebook", description=__doc__.split("\n")[0]
    )
    parser.add_argument("notebook", type=Path)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"default {DEFAULT_OUT}")
    parser.add_argument(
        "-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE")
    )
    parser.add_argument("--smallest", action="store_true", help="the tiny CI size (~2-3 minutes)")
    parser.add_argument("--no-markdown", action="store_true", help="skip the Markdown export")
    args = parser.parse_args(argv)
    try:
        if not args.notebook.is_file():
            raise AeLabError(f"Notebook not found: {args.notebook} (e.g. notebooks/tarea05.py).")
        params = (dict(SMALLEST) if args.smallest else {}) | parse_parameters(args.parameter)
        start = time.perf_counter()
        execute(args.notebook, args.out, params, repo_root(args.notebook))
        print(
            f"[ae-lab] executed {args.notebook} -> {args.out} in {time.perf_counter() - start:.0f} s"
        )
        if not args.no_markdown:
            print(f"[ae-lab] Markdown export: {export_markdown(args.out)}")
    except AeLabError as err:
        print(f"\n[ae-lab] error: {err}\n", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
