"""Display helpers of the hand-in notebook: outputs that stay small and readable everywhere.

Plotly figures go out as Plotly's own MIME bundle (interactive in JupyterLab, VS Code, Colab),
an HTML version loading plotly.js from its CDN (classic notebook, nbviewer) and a Markdown note
for static renderers (GitHub, the Markdown export), which cannot run Plotly; every figure the
notebook draws is therefore paired with a table of its numbers. Images are PNG, or JPEG when a
PNG would be large, so that the executed notebook stays a few MB.
"""

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from IPython.display import Image, Markdown, display
from PIL import Image as PILImage

from ae_lab.analysis.tables import to_markdown

MAX_PNG_BYTES = 150_000  # larger images are re-encoded as JPEG
JPEG_QUALITY = 85


def show_md(text: str) -> None:
    display(Markdown(text))


def show_table(
    table: pd.DataFrame, digits: int = 3, bold_best_of: list[str] | None = None, title: str = ""
) -> None:
    """A DataFrame as a Markdown table (renders in Jupyter, on GitHub and in the Markdown export)."""
    head = f"**{title}**\n\n" if title else ""
    show_md(head + to_markdown(table, bold_best_of, digits))


def figure_bundle(fig: go.Figure) -> dict:
    """The MIME bundle of `fig`: Plotly JSON, CDN-backed HTML and a Markdown note."""
    title = fig.layout.title.text or "figura"
    note = f"*[Figura interactiva de Plotly: «{title}»; se ve al abrir el notebook en Jupyter.]*"
    return {
        "application/vnd.plotly.v1+json": json.loads(pio.to_json(fig, validate=False)),
        "text/html": pio.to_html(fig, include_plotlyjs="cdn", full_html=False),
        "text/markdown": note,
        "text/plain": f"<Plotly figure: {title}>",
    }


def show_figure(fig: go.Figure, height: int | None = None) -> None:
    if height is not None:
        fig = go.Figure(fig).update_layout(height=height)
    display(figure_bundle(fig), raw=True)


def encode_image(img: PILImage.Image) -> tuple[bytes, str]:
    """PNG bytes, or JPEG bytes when the PNG exceeds MAX_PNG_BYTES -> (data, format)."""
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    if buf.tell() <= MAX_PNG_BYTES:
        return buf.getvalue(), "png"
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue(), "jpeg"


def show_pil(img: PILImage.Image, width: int | None = None) -> None:
    data, fmt = encode_image(img)
    display(Image(data=data, format=fmt, width=width))


def show_array(array: np.ndarray, width: int | None = None) -> None:
    """uint8 [H,W] or [H,W,3] as an image."""
    show_pil(PILImage.fromarray(array), width)


def show_image_file(path: str | Path, caption: str = "", width: int | None = None) -> None:
    """An image file (e.g. W&B media), with an optional caption printed below it."""
    with PILImage.open(path) as img:
        show_pil(img.copy(), width)
    if caption:
        show_md(f"<sub>{caption}</sub>")
