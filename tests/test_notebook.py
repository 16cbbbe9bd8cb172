"""The hand-in notebook: its structure (fast) and a real execution at the smallest size (slow)."""

import re
from pathlib import Path

import nbformat
import numpy as np
import pytest
from PIL import Image

from ae_lab.errors import AeLabError
from ae_lab.report.display import MAX_PNG_BYTES, encode_image, figure_bundle
from ae_lab.report.notebook import SMALLEST, export_markdown, main, parse_parameters
from ae_lab.report.wandb_media import media_files, media_names, open_api_run

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "tarea05.ipynb"
SOURCE = NOTEBOOK.with_suffix(".py")  # jupytext percent script, paired with the .ipynb
SECTIONS = [
    "1. Objetivo",
    "2. Datos",
    "3. Configuración (Hydra)",
    "4. Modelos y LightningModule",
    "5. Entrenamiento",
    "6. Resultados desde W&B",
    "7. Análisis",
    "8. Conclusiones",
]
PARAMETERS = {
    "DATA", "DATA_ROOT", "EPOCHS", "N_TRAIN", "N_TEST", "IMAGE_SIZE", "CATEGORIES", "PROJECT",
    "WANDB_MODE", "WANDB_DIR", "RUN_GRID", "GROUP",
}  # fmt: skip
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
    assert set(SMALLEST) <= assigned, "--smallest may only set parameters the notebook has"


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
    """Code cells call into ae_lab; a long cell is a program that belongs in ae_lab/report/."""
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


def test_parse_parameters_reads_yaml_values():
    assert parse_parameters([["EPOCHS", "3"], ["CATEGORIES", "[screw, cable]"], ["GROUP", "g1"]]) == {
        "EPOCHS": 3, "CATEGORIES": ["screw", "cable"], "GROUP": "g1",
    }  # fmt: skip
    with pytest.raises(AeLabError, match="EPOCHS"):
        parse_parameters([["EPOCHS", "[1,"]])


def test_media_names_single_file_and_lists():
    summary = {
        "val/reconstructions.path": "media/images/val/r_4_ab.png",
        "test/reconstructions.filenames": ["media/images/test/a.png", "media/images/test/b.png"],
        "test/image_auroc": 0.9,
    }
    assert media_names(summary, "val/reconstructions") == ["media/images/val/r_4_ab.png"]
    assert len(media_names(summary, "test/reconstructions")) == 2
    assert media_names(summary, "test/image_auroc") == []


class FakeFile:
    def __init__(self, name: str) -> None:
        self.name = name

    def download(self, root: str, exist_ok: bool = False):
        path = Path(root) / self.name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"png")
        return path.open()


class FakeApiRun:
    def __init__(self) -> None:
        self.id, self.name = "abc123", "ae-l2-z128"
        self.summary = {
            "val/reconstructions": {"_type": "image-file", "path": "media/images/v_1.png"}
        }

    def file(self, name: str) -> FakeFile:
        return FakeFile(name)


class FakeApi:
    def run(self, path: str) -> FakeApiRun:
        assert path == "me/tarea05/abc123"
        return FakeApiRun()


def test_online_media_are_downloaded_into_the_cache(tmp_path: Path):
    run = open_api_run("me/tarea05/abc123", tmp_path, api=FakeApi())
    assert media_files(run, "val/reconstructions") == [tmp_path / "abc123/media/images/v_1.png"]
    with pytest.raises(AeLabError, match=r"no media at `val/latent_tsne`.*val/reconstructions"):
        media_files(run, "val/latent_tsne")


def test_display_outputs_stay_small_and_portable():
    import plotly.graph_objects as go

    bundle = figure_bundle(go.Figure(go.Scatter(x=[1, 2], y=[3, 4]), layout={"title": "t"}))
    assert {"application/vnd.plotly.v1+json", "text/html", "text/markdown"} <= set(bundle)
    assert "plotly.min.js" not in bundle["text/html"] or "cdn" in bundle["text/html"]
    assert len(bundle["text/html"]) < 20_000  # plotly.js itself is never embedded
    noise = np.random.default_rng(0).integers(0, 256, (400, 400, 3), dtype=np.uint8)
    data, fmt = encode_image(Image.fromarray(noise))
    assert fmt == "jpeg" and len(data) < 3 * MAX_PNG_BYTES
    assert encode_image(Image.new("RGB", (64, 64)))[1] == "png"


@pytest.mark.slow
def test_failing_cell_is_named(tmp_path: Path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("x = 1"),
        nbformat.v4.new_code_cell("raise ValueError('boom')"),
    ]
    src = tmp_path / "nb" / "bad.ipynb"
    src.parent.mkdir()
    nbformat.write(nb, src)
    (tmp_path / "train.py").write_text("")
    (tmp_path / "conf").mkdir()
    with pytest.raises(
        AeLabError,
        match=r"cell 1 \(starting `raise ValueError\('boom'\)`\) raised ValueError: boom",
    ):
        from ae_lab.report.notebook import execute

        execute(src, tmp_path / "out.ipynb", {}, tmp_path)


@pytest.mark.slow
def test_notebook_runs_at_smallest_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("AE_LAB_OUTPUTS", str(tmp_path / "outputs"))
    out = tmp_path / "tarea05.ipynb"
    assert main([str(NOTEBOOK), "--smallest", "--out", str(out)]) == 0
    nb = nbformat.read(out, as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    texts = "".join(str(o.get("data", {}).get("text/markdown", "")) for o in outputs)
    assert "**8 corridas**" in texts
    images = [o for o in outputs if {"image/png", "image/jpeg"} & set(o.get("data", {}))]
    assert len(images) >= 10  # samples, masks, preprocessing, 8 W&B reconstructions, test strips
    md = out.with_suffix(".md")
    assert md.is_file() and "## 7. Análisis" in md.read_text()
    assert export_markdown(out) == md
