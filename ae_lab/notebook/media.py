"""Show a W&B run's media in a notebook. They are read back by the analysis' reader
(`ae_lab.analysis.runs.media_files`, `open_run`; imported here for the notebook), which replays an
offline run's summary from its log or asks the W&B API.
"""

import ast
import inspect
import io
import textwrap
import tokenize
from pathlib import Path

import numpy as np
from IPython.display import Image, Markdown, display
from PIL import Image as PILImage

from ae_lab.analysis.runs import media_files, open_run

__all__ = ["MAX_PNG_BYTES", "media_files", "open_run", "show_image", "source_without_comments"]

MAX_PNG_BYTES = 150_000  # larger images are embedded as JPEG: the committed notebook stays small
DOCUMENTED = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


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


def source_without_comments(obj: object) -> str:
    """The source of a function, class or file (a Path) without its comments and docstrings: the
    package speaks English, a Spanish hand-in shows its code bare."""
    text = obj.read_text() if isinstance(obj, Path) else textwrap.dedent(inspect.getsource(obj))
    drop = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, DOCUMENTED) and ast.get_docstring(node, clean=False) is not None:
            drop.update(range(node.body[0].lineno, node.body[0].end_lineno + 1))
    lines = text.splitlines()
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type == tokenize.COMMENT:
            row, col = tok.start
            lines[row - 1] = lines[row - 1][:col].rstrip()
            if not lines[row - 1].strip():
                drop.add(row)
    return "\n".join(line for i, line in enumerate(lines, 1) if i not in drop).strip()
