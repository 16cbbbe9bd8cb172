"""Regression tests of issue 13: bad settings and faults never lose a run or report a false result,
and every bad value names its key."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ae_lab.data import cache
from ae_lab.data.datamodule import MVTecDataModule
from ae_lab.data.table import MaskSizeWarning, NoTestImagesWarning, scan_mvtec
from ae_lab.errors import AeLabError
from tests.conftest import write_tiny_mvtec

REPO = Path(__file__).resolve().parents[1]


def small_tree(root: Path) -> Path:
    return write_tiny_mvtec(root, n_train=4, n_test_good=1, n_per_defect=1)


# ---- data ---------------------------------------------------------------------------------------
def test_appledouble_files_are_skipped(tmp_path):  # item 17
    root = small_tree(tmp_path / "mvtec")
    (root / "widget/train/good/._000.png").write_bytes(b"\x00\x05\x16\x07 Mac OS X metadata")
    (root / "widget/test/good/._000.png").write_bytes(b"\x00\x05\x16\x07")
    table = scan_mvtec(root, ["widget"])
    assert not any(Path(p).name.startswith(".") for p in table["path"])
    dm = MVTecDataModule(root, ["widget"], image_size=16, cache_dir=tmp_path / "cache")
    dm.setup()  # decodes every listed image; a `._` file would fail with "re-download"


def test_duplicate_categories_are_rejected_naming_the_key(tmp_path):  # item 8
    root = small_tree(tmp_path / "mvtec")
    with pytest.raises(AeLabError, match=r"data\.categories.*widget.*data\.categories=\[widget\]"):
        MVTecDataModule(root, ["widget", "widget"], image_size=16)
    with pytest.raises(AeLabError, match="more than once"):
        scan_mvtec(root, ["widget", "screw", "widget"])


def test_category_without_test_folder_says_where_it_looked(tmp_path):  # item 7
    root = small_tree(tmp_path / "mvtec")
    shutil.rmtree(root / "widget/test")
    with pytest.warns(NoTestImagesWarning, match=str(root.resolve() / "widget" / "test")):
        table = scan_mvtec(root, ["widget"])
    assert (table["split"] == "train").all()
    cache_dir = tmp_path / "cache"
    dm = MVTecDataModule(root, ["widget"], image_size=16, cache_dir=cache_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoTestImagesWarning)
        dm.prepare_data()
        with pytest.raises(AeLabError, match=r"Nothing to test.*widget/test.*test=false"):
            dm.setup("test")
    # No cache file named after no categories (`--16px-....npz`).
    assert not [f for f in os.listdir(cache_dir) if f.startswith("-")]


def test_mask_of_another_size_is_left_out_of_pixel_metrics(tmp_path):  # item 9
    root = small_tree(tmp_path / "mvtec")
    mask = root / "widget/ground_truth/scratch/000_mask.png"
    Image.open(mask).resize((20, 20)).save(mask)
    with pytest.warns(MaskSizeWarning, match=str(mask)):
        table = scan_mvtec(root, ["widget"])
    image = str(root / "widget/test/scratch/000.png")
    row = table[table["path"] == image].iloc[0]
    assert row["label"] == 1 and row["mask_path"] is None  # image-level only
    assert table["mask_path"].notna().sum() == 1  # the other defective image keeps its mask


def test_read_only_cache_folder_runs_without_the_cache(tiny_mvtec, tmp_path, monkeypatch):  # 12
    rows = scan_mvtec(tiny_mvtec, ["widget"])
    rows = rows[rows["split"] == "train"]

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(np, "savez", read_only)
    monkeypatch.setattr(Path, "unlink", read_only)
    with pytest.warns(UserWarning, match="continuing without it"):
        images, masks = cache.load_or_build(rows, 16, tmp_path / "cache", tiny_mvtec)
    assert images.shape == (len(rows), 3, 16, 16) and masks.shape == (len(rows), 16, 16)


@pytest.mark.parametrize(
    ("key", "value"),
    [("batch_size", "abc"), ("image_size", "big"), ("val_fraction", "some"), ("num_workers", 1.5)],
)
def test_data_values_of_the_wrong_type_name_the_key(tmp_path, key, value):  # item 13
    with pytest.raises(AeLabError, match=rf"`data\.{key}` must be .*{value!r}"):
        MVTecDataModule(tmp_path, ["widget"], **{key: value})


CONCURRENT_RUN = """
import json, sys
from ae_lab.data import cache, synthetic
from ae_lab.data.datamodule import MVTecDataModule

events = []
generate, decode = synthetic.generate, cache._decode
synthetic.generate = lambda *a, **k: (events.append("generated"), generate(*a, **k))[1]
cache._decode = lambda *a, **k: (events.append("decoded"), decode(*a, **k))[1]
dm = MVTecDataModule(
    sys.argv[1], ["cable"], image_size=32, cache_dir=sys.argv[2],
    generate={"n_train": 6, "n_test": 6, "seed": 0, "image_size": 32},
)
dm.prepare_data()
dm.setup()
print(json.dumps({"events": events, "n": len(dm.dataset("test"))}))
"""


@pytest.mark.slow
def test_parallel_runs_on_a_fresh_synthetic_root_generate_and_decode_once(tmp_path):  # item 4
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(CONCURRENT_RUN))
    root, cache_dir = tmp_path / "synthetic", tmp_path / "cache"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(root), str(cache_dir)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=240) for p in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
    results = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    events = [e for r in results for e in r["events"]]
    assert events.count("generated") == 1, events
    # train and test caches: each decoded by one of the two runs only
    assert events.count("decoded") == 2, events
    assert results[0]["n"] == results[1]["n"] == 6
