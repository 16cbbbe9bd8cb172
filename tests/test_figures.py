"""ae_lab.figures: the score histograms and t-SNE figures, as plain (W&B-drawable) Plotly."""

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ae_lab.callbacks import tsne_table
from ae_lab.figures import error_histograms, plain_figure, tsne_figure


def _scores() -> pd.DataFrame:
    rows = []
    for cat, defects in {"cable": ("bent", "cut"), "screw": ("thread",)}.items():
        rows += [(cat, "good", 0, s) for s in (0.1, 0.2, 0.3, 0.4)]
        for d in defects:
            rows += [(cat, d, 1, s) for s in (0.35, 0.5, 0.6)]
    return pd.DataFrame(rows, columns=["category", "defect", "label", "score"])


def test_error_histogram_one_trace_per_defect_plus_good_with_auroc():
    figs = error_histograms(_scores())
    assert sorted(figs) == ["cable", "screw"]
    names = [t.name for t in figs["cable"].data]
    assert len(names) == 3 and names[0].startswith("good (n=4)")
    # bent vs good: 0.35 beats 3 of 4 good scores, 0.5 and 0.6 beat all -> (3 + 4 + 4) / 12.
    assert names[1] == f"bent (n=3, AUROC={11 / 12:.3f})" and names[2].startswith("cut (n=3")
    assert [t.name.split(" ")[0] for t in figs["screw"].data] == ["good", "thread"]
    assert figs["cable"].layout.barmode == "overlay"
    assert "bdata" not in figs["cable"].to_json()  # plain lists: W&B's Plotly panel can draw them


def test_tsne_table_and_figure():
    meta = pd.DataFrame(
        {
            "category": ["a", "a", "b", "b", "b"],
            "defect": ["good", "cut", "good", "good", "hole"],
            "label": [0, 1, 0, 0, 1],
            "path": [f"p{i}.png" for i in range(5)],
        }
    )
    table = tsne_table(np.arange(10, dtype=float).reshape(5, 2), meta)
    assert set(table.columns) == {"x", "y", "category", "defect", "label", "path"}
    assert table["x"].tolist() == [0, 2, 4, 6, 8]
    fig = tsne_figure(table, color="category")
    assert sorted(t.name for t in fig.data) == ["a", "b"]
    fig = tsne_figure(table, color="status", symbol="category")
    assert sum(len(t.x) for t in fig.data) == 5
    assert {t.name.split(",")[0] for t in fig.data} == {"good", "defective"}
    assert "bdata" not in fig.to_json()


def test_plain_figure_decodes_typed_arrays():
    z = np.arange(6, dtype=np.float32).reshape(2, 3)
    fig = go.Figure([go.Heatmap(z=z), go.Scatter(x=np.array([1, 2], np.int8), y=[0.5, 1.5])])
    assert "bdata" in fig.to_json()  # what plotly itself writes
    plain = plain_figure(fig)
    assert "bdata" not in plain.to_json()
    assert [list(r) for r in plain.data[0].z] == z.tolist()
    assert list(plain.data[1].x) == [1, 2] and list(plain.data[1].y) == [0.5, 1.5]
