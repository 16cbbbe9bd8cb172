"""Write `notebooks/tarea05.ipynb` from the cell sources below (prose in Spanish, code in English).

    python notebooks/build_notebook.py            # the unexecuted notebook (outputs cleared)
    python -m ae_lab.notebook notebooks/tarea05.ipynb --out notebooks/tarea05.ipynb   # execute it

The notebook is kept here as readable Python so that changes are reviewed as code, not JSON.
Cells live in `notebooks/cells/`: one module per section, each a list `CELLS` of ("md" | "code",
source) pairs; the code cell whose source starts with `# Parámetros` is tagged `parameters`.
`make lint` checks the notebook's code cells too (ruff reads .ipynb): keep the cell sources
ruff-formatted. After any change to a cell, rebuild and re-execute (tests/test_notebook.py checks
that the committed notebook's cells match these sources).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
CELL_DIR = HERE / "cells"
SECTIONS = (
    "s0_header",
    "s1_objetivo",
    "s2_datos",
    "s3_configuracion",
    "s4_modelos",
    "s5_entrenamiento",
    "s6_resultados",
    "s7_analisis",
    "s8_conclusiones",
)
PARAMETERS_MARK = "# Parámetros"


def load_cells() -> list[tuple[str, str]]:
    """All (kind, source) pairs of every section, in order."""
    cells: list[tuple[str, str]] = []
    for name in SECTIONS:
        spec = importlib.util.spec_from_file_location(name, CELL_DIR / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        cells += [(kind, source.strip("\n")) for kind, source in module.CELLS]
    return cells


def build() -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.metadata["language_info"] = {"name": "python"}
    for kind, source in load_cells():
        if kind == "md":
            nb.cells.append(nbformat.v4.new_markdown_cell(source))
            continue
        cell = nbformat.v4.new_code_cell(source)
        if source.startswith(PARAMETERS_MARK):
            cell.metadata["tags"] = ["parameters"]
        nb.cells.append(cell)
    for i, cell in enumerate(nb.cells):
        cell.id = f"cell-{i:03d}"  # stable ids: a rebuild changes only what changed
    return nb


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else HERE / "tarea05.ipynb"
    nbformat.write(build(), out)
    print(f"wrote {out} ({len(build().cells)} cells)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
