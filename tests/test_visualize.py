"""Pure helpers behind the W&B media: grids, colour map, histograms, t-SNE, image selection."""

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch

from ae_lab.callbacks import (
    round_robin,
    select_test,
    tsne_2d,
    tsne_table,
)
from ae_lab.figures import error_histograms, plain_figure, tsne_figure
from ae_lab.images import (
    INFERNO,
    anomaly_strip,
    image_grid,
    reconstruction_grid,
    to_uint8,
)

INFERNO_LUT = INFERNO(np.arange(256), bytes=True)[:, :3]  # [256, 3] uint8


def test_to_uint8_range_layout_and_gray():
    x = torch.tensor([-0.5, 0.0, 0.5, 1.0, 2.0]).view(1, 1, 1, 5)
    out = to_uint8(x)
    assert out.shape == (1, 1, 5, 3) and out.dtype == np.uint8
    assert out[0, 0, :, 0].tolist() == [0, 0, 128, 255, 255]
    assert (out[..., 0] == out[..., 2]).all()  # gray expanded to RGB
    rgb = torch.zeros(1, 3, 4, 6)
    rgb[:, 1] = 1.0
    assert to_uint8(rgb).shape == (1, 4, 6, 3) and to_uint8(rgb)[0, 0, 0].tolist() == [0, 255, 0]


def test_image_grid_places_images_row_major():
    imgs = np.stack([np.full((4, 5, 3), i * 10, np.uint8) for i in range(5)])
    grid = image_grid(imgs, ncol=3, pad=1)
    assert grid.shape == (2 * 5 + 1, 3 * 6 + 1, 3)
    assert grid[1, 1, 0] == 0 and grid[1, 1 + 6 * 2, 0] == 20  # row 0: images 0, 1, 2
    assert grid[1 + 5, 1 + 6, 0] == 40  # row 1, column 1: image 4
    assert grid[0, 0, 0] == 255 and grid[-1, -1, 0] == 255  # padding; empty cell stays white


def test_reconstruction_grid_originals_above_reconstructions():
    n, h, w = 16, 8, 6
    originals = torch.zeros(n, 3, h, w)
    recons = torch.ones(n, 3, h, w)
    grid = reconstruction_grid(originals, recons, ncol=8, pad=2, block_gap=8)
    block_h = 2 * (h + 2) + 2
    assert grid.shape == (2 * block_h + 8, 8 * (w + 2) + 2, 3)
    for block in range(2):
        top = block * (block_h + 8)
        assert (grid[top + 2 : top + 2 + h, 2 : 2 + w] == 0).all()  # original row: black
        row2 = top + 2 + h + 2
        assert (grid[row2 : row2 + h, 2 : 2 + w] == 255).all()  # reconstruction row: white


def test_reconstruction_grid_with_a_partial_last_block():
    grid = reconstruction_grid(torch.zeros(5, 3, 4, 4), torch.zeros(5, 3, 4, 4), ncol=4, pad=1)
    block_h = 2 * 5 + 1
    assert grid.shape == (2 * block_h + 8, 4 * 5 + 1, 3)


def test_anomaly_strip_has_four_panels_with_shared_scale():
    """The map goes through inferno (dark to bright) on [0, vmax], clipped outside."""
    assert INFERNO_LUT.shape == (256, 3) and INFERNO_LUT.dtype == np.uint8
    luminance = INFERNO_LUT.astype(float) @ np.array([0.299, 0.587, 0.114])
    assert (np.diff(luminance) > -1.0).all() and luminance[-1] - luminance[0] > 200
    h, w = 10, 12
    amap = torch.zeros(1, h, w)
    amap[0, :5] = 2.0
    amap[0, 5] = 9.0  # above vmax: as bright as vmax
    amap[0, 6] = 1.0  # half of vmax
    amap[0, 7] = -1.0  # below 0: as dark as 0
    mask = torch.zeros(1, h, w)
    mask[0, :, :3] = 1.0
    strip = anomaly_strip(torch.rand(3, h, w), torch.rand(3, h, w), amap, mask, vmax=2.0, pad=2)
    assert strip.shape == (h + 4, 4 * (w + 2) + 2, 3) and strip.dtype == np.uint8
    heat_x, mask_x = 2 + 2 * (w + 2), 2 + 3 * (w + 2)
    assert strip[2, heat_x].tolist() == INFERNO_LUT[255].tolist()
    assert strip[2 + h - 1, heat_x].tolist() == INFERNO_LUT[0].tolist()
    assert strip[2 + 5, heat_x].tolist() == INFERNO_LUT[255].tolist()
    assert strip[2 + 6, heat_x].tolist() == INFERNO_LUT[128].tolist()
    assert strip[2 + 7, heat_x].tolist() == INFERNO_LUT[0].tolist()
    assert strip[2, mask_x].tolist() == [255, 255, 255] and strip[2, mask_x + 5].tolist() == [
        0,
        0,
        0,
    ]


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


def test_tsne_small_sets():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(5, 8))
    coords = tsne_2d(z, seed=0)
    assert coords.shape == (5, 2) and np.isfinite(coords).all()
    assert np.allclose(coords, tsne_2d(z, seed=0))  # seeded: reruns give the same map
    assert tsne_2d(z[:2]).shape == (2, 2) and tsne_2d(z[:0]).shape == (0, 2)
    assert np.isfinite(tsne_2d(np.ones((3, 8)))).all()


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


def _table() -> pd.DataFrame:
    rows = [("cable", "good", 0)] * 10 + [("screw", "good", 0)] * 3
    rows += [("cable", "bent", 1)] * 5 + [("cable", "cut", 1)] * 5 + [("screw", "thread", 1)] * 6
    return pd.DataFrame(rows, columns=["category", "defect", "label"])


def test_round_robin_covers_groups_and_is_deterministic():
    good = _table()[_table()["label"] == 0]
    picked = round_robin(good, 8, ["category"], seed=0)
    assert len(picked) == len(set(picked)) == 8
    cats = good.loc[picked, "category"].tolist()
    assert cats[:6] == ["cable", "screw"] * 3 and cats[6:] == ["cable", "cable"]  # screw ran out
    assert picked == round_robin(good, 8, ["category"], seed=0)
    assert round_robin(good, 8, ["category"], seed=1) != picked
    assert sorted(round_robin(good, 100, ["category"])) == list(good.index)  # all, once each
    assert round_robin(good.iloc[:0], 4, ["category"]) == []


def test_select_test_half_good_half_defective_over_defect_types():
    table = _table()
    rows = select_test(table, 16, seed=0)
    picked = table.loc[rows]
    assert len(rows) == len(set(rows)) == 16
    assert (picked["label"] == 0).sum() == 8 and (picked["label"] == 1).sum() == 8
    assert set(picked.loc[picked["label"] == 1, "defect"]) == {"bent", "cut", "thread"}
    assert set(picked.loc[picked["label"] == 0, "category"]) == {"cable", "screw"}
    bad = picked[picked["label"] == 1]
    assert (bad["category"] == "screw").sum() == 4  # classes alternate before defect types do
    assert bad.loc[bad["category"] == "cable", "defect"].value_counts().to_dict() == {
        "bent": 2,
        "cut": 2,
    }
    assert list(picked["category"]) == sorted(picked["category"])  # listed class by class
    few_bad = table[(table["label"] == 0) | (table["defect"] == "cut")].head(15)
    assert len(select_test(few_bad, 16)) == 15  # every available image, no duplicates
