"""The hand-in notebook: its structure (fast), how it shows images, and a real execution by
`make notebook` at the smallest size (slow)."""

import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest
import yaml

from ae_lab.notebook import media

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "tarea05.ipynb"
SOURCE = NOTEBOOK.with_suffix(".py")  # jupytext percent script, paired with the .ipynb
SMALLEST = REPO / "notebooks" / "smallest.yaml"  # papermill parameters of the CI size
SECTIONS = [
    "1. Qué se compara y cómo se mide",
    "2. El código que se califica",
    "3. Las rejillas",
    "4. Resultados en imágenes reales",
    "5. Análisis crítico",
    "6. Conclusiones",
    "Apéndice A. El sustituto sintético: las cuatro clases de la tarea",
    "Apéndice B. Reproducir esta entrega",
]
PARAMETERS = {
    "PROJECT",
    "WANDB_DIR",
    "REAL_GROUP",
    "SYN_GROUP",
    "RUN_GRIDS",
    "REAL_ROOT",
    "SYN_OVERRIDES",
}
SPANISH = {"de", "la", "el", "que", "los", "las", "en", "con", "por", "una", "se", "es", "del"}
ENGLISH = {"the", "and", "of", "with", "is", "to", "that", "which", "for", "are"}


def built() -> nbformat.NotebookNode:
    import jupytext

    return jupytext.read(SOURCE)


def words(text: str) -> list[str]:
    text = re.sub(r"`[^`]*`|\$[^$]*\$", " ", text)  # code spans are English identifiers
    return re.findall(r"[a-záéíóúñü]+", text.lower())


def test_parameters_cell_is_tagged_and_complete():
    tagged = [c for c in built().cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and tagged[0].cell_type == "code"
    assigned = set(re.findall(r"^([A-Z_]+) =", tagged[0].source, flags=re.M))
    assert assigned >= PARAMETERS
    smallest = yaml.safe_load(SMALLEST.read_text())
    assert set(smallest) <= assigned, "smallest.yaml may only set parameters the notebook has"


def test_sections_in_order_and_prose_in_spanish():
    cells = [c for c in built().cells if c.cell_type == "markdown"]
    headings = [
        ln[3:].strip() for c in cells for ln in c.source.splitlines() if ln.startswith("## ")
    ]
    assert headings == SECTIONS
    for cell in cells:
        w = words(cell.source)
        if len(w) >= 15:
            es, en = sum(x in SPANISH for x in w), sum(x in ENGLISH for x in w)
            assert es >= 3 and es > 2 * en, cell.source[:200]


def committed_cells() -> list:
    committed = nbformat.read(NOTEBOOK, as_version=4)
    return [c for c in committed.cells if "injected-parameters" not in c.metadata.get("tags", [])]


def test_committed_notebook_matches_its_jupytext_source():
    assert [(c.cell_type, c.source) for c in committed_cells()] == [
        (c.cell_type, c.source) for c in built().cells
    ], "notebooks/tarea05.ipynb is out of date with tarea05.py: run `make notebook` and commit both"


def test_short_code_cells():
    """Each code cell does one visible thing; a long cell is a program to split or move."""
    for cell in built().cells:
        if cell.cell_type == "code":
            assert len(cell.source.splitlines()) <= 30, cell.source[:200]


def test_committed_notebook_holds_an_execution():
    cells = committed_cells()
    outputs = [o for c in cells if c.cell_type == "code" for o in c.outputs]
    if not outputs:
        pytest.skip("tarea05.ipynb is not executed yet: `make demo`, then `make notebook`")
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if {"image/png", "image/jpeg"} & set(o.get("data", {}))]
    assert len(images) >= 10, "the committed notebook must hold the images of a real execution"
    assert NOTEBOOK.stat().st_size < 6_000_000
    assert (NOTEBOOK.with_suffix(".md")).is_file()
    # What a grader reads: no warnings on stderr, no absolute path of the machine that ran it.
    assert not [o for o in outputs if o.get("name") == "stderr"]
    texts = json.dumps([o.get("text", "") for o in outputs] + [o.get("data", {}) for o in outputs])
    assert not re.findall(r"[\s'\"(]/(?:home|work|tmp|root|Users|mnt|opt)/", texts)


def test_large_images_are_embedded_as_jpeg(monkeypatch):
    shown = []
    monkeypatch.setattr(media, "display", shown.append)
    noise = np.random.default_rng(0).integers(0, 256, (400, 400, 3), dtype=np.uint8)
    media.show_image(noise)
    media.show_image(np.zeros((64, 64, 3), np.uint8), caption="c")
    assert [im.format for im in shown[:2]] == ["jpeg", "png"]
    assert len(shown[0].data) < 3 * media.MAX_PNG_BYTES and shown[-1].data == "<sub>c</sub>"


@pytest.mark.slow
def test_notebook_runs_at_smallest_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("AE_LAB_OUTPUTS", str(tmp_path / "outputs"))
    out = tmp_path / "tarea05.ipynb"
    stale = tmp_path / "tarea05_files" / "stale.png"  # from an earlier export: removed
    stale.parent.mkdir()
    stale.write_bytes(b"png")
    venv = Path(sys.prefix)  # this interpreter's venv, installed already: `-o` skips `setup`
    make = ["make", "-s", "-o", f"{venv}/.installed", "notebook", f"VENV={venv}"]
    args = [f"NOTEBOOK_OUT={out}", f"NOTEBOOK_ARGS=-f {SMALLEST}"]
    proc = subprocess.run([*make, *args], cwd=REPO, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    nb = nbformat.read(out, as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    texts = "".join(str(o.get("data", {}).get("text/markdown", "")) for o in outputs)
    assert ", 9 ejecuciones y su análisis" in texts  # the 8-run grid and unet_coarse
    # No debris for the grader: nothing on stderr, no path of this machine in any output.
    assert not [o for o in outputs if o.get("name") == "stderr"]
    streams = "".join(str(o.get("text", "")) for o in outputs)
    assert str(REPO) not in texts + streams and str(tmp_path) not in texts + streams
    images = [o for o in outputs if {"image/png", "image/jpeg"} & set(o.get("data", {}))]
    assert len(images) >= 4  # every figure read back from W&B (no real part at this size)
    md = out.with_suffix(".md").read_text()
    assert "## 5. Análisis crítico" in md
    referenced = set(re.findall(r"tarea05_files/[^)\s]+", md))
    assert {f"tarea05_files/{f.name}" for f in stale.parent.iterdir()} == referenced
    # The support cells (hide-input) show their output only.
    hidden = [c.source for c in nb.cells if "hide-input" in c.metadata.get("tags", [])]
    assert hidden and not [source for source in hidden if source in md]
