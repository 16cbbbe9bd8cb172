"""ae_lab.data.datamodule: the Batch every loader yields, seeded splits and shuffles, the argument
checks, writing the synthetic set in prepare_data, augmentation, and the decode cache."""

import os
import shutil
import sys
import threading
import time
import types
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import fields, replace
from pathlib import Path

import lightning
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import ae_lab.data
from ae_lab.batch import Batch
from ae_lab.data import datamodule, synthetic
from ae_lab.data.datamodule import MVTecDataModule, load_or_build
from ae_lab.data.table import NoTestImagesWarning, load_image, scan_mvtec
from ae_lab.errors import AeLabError, SettingError
from tests.conftest import TINY_CATEGORIES, TINY_N_TRAIN, write_tiny_mvtec

S = 32


def _dm(root: Path, tmp_path: Path, **kwargs) -> MVTecDataModule:
    args = dict(categories=TINY_CATEGORIES, image_size=S, val_fraction=0.25, batch_size=4, seed=3)
    return MVTecDataModule(root, cache_dir=tmp_path / "cache", **{**args, **kwargs})


def _order(loader) -> list[int]:
    return torch.cat([batch.index for batch in loader]).tolist()


# ---- loaders ------------------------------------------------------------------------------------
def test_batches_follow_the_contract(tiny_mvtec: Path, tmp_path: Path) -> None:
    dm = _dm(tiny_mvtec, tmp_path)
    dm.prepare_data()
    dm.setup()
    loaders = {
        "train": dm.train_dataloader(),
        "val": dm.val_dataloader(),
        "test": dm.test_dataloader(),
    }
    sizes = {"train": 2 * (TINY_N_TRAIN - 2), "val": 4, "test": 2 * 7}
    for split, loader in loaders.items():
        table = dm.table(split)
        assert len(table) == sizes[split] == len(loader.dataset)
        batches = list(loader)
        for batch in batches:
            b = len(batch)
            assert isinstance(batch, Batch)
            assert batch.image.dtype == torch.float32 and batch.image.shape == (b, 3, S, S)
            assert batch.image.min() >= 0.0 and batch.image.max() <= 1.0
            assert batch.label.dtype == torch.long and batch.label.shape == (b,)
            assert batch.mask.dtype == torch.float32 and batch.mask.shape == (b, 1, S, S)
            assert batch.has_mask.dtype == torch.bool and batch.has_mask.shape == (b,)
            assert batch.index.dtype == torch.long and batch.index.shape == (b,)
            assert all(len(getattr(batch, k)) == b for k in ("category", "defect", "path"))
            rows = table.iloc[batch.index.numpy()]
            assert batch.path == rows["path"].tolist() and batch.defect == rows["defect"].tolist()
            assert batch.category == rows["category"].tolist()
            assert batch.label.tolist() == rows["label"].tolist()
            assert batch.has_mask.tolist() == rows["mask_path"].notna().tolist()
            # Masks are non-empty exactly where a mask file exists.
            assert (batch.mask.flatten(1).amax(1) > 0).tolist() == batch.has_mask.tolist()
        indices = _order(batches)
        assert sorted(indices) == list(range(len(table)))
        if split != "train":
            assert indices == list(range(len(table)))  # not shuffled
    test = dm.table("test")
    assert test["label"].sum() == 8 and (test["split"] == "test").all()
    assert set(dm.table("val")["category"]) == set(TINY_CATEGORIES)


def test_one_item_is_a_batch_of_one(tiny_mvtec: Path, tmp_path: Path) -> None:
    item = _dm(tiny_mvtec, tmp_path).dataset("test")[3]
    assert isinstance(item, Batch) and len(item) == 1 and item.index.tolist() == [3]
    names = {"image", "label", "mask", "has_mask", "index", "category", "defect", "path"}
    assert {f.name for f in fields(item)} == names


def test_split_and_shuffle_are_seeded_per_epoch(tiny_mvtec: Path, tmp_path: Path) -> None:
    a, b, c = (_dm(tiny_mvtec, tmp_path, seed=s) for s in (3, 3, 4))
    assert a.table("val").equals(b.table("val"))
    assert not a.table("val")["path"].equals(c.table("val")["path"])
    assert _order(a.train_dataloader()) == _order(b.train_dataloader())
    # The order depends on (seed, epoch) only: a resumed run sees the same batches.
    loader = a.train_dataloader()
    first = _order(loader)
    loader.sampler.set_epoch(1)
    second = _order(loader)
    assert second != first and sorted(second) == sorted(first)
    other = b.train_dataloader()
    other.sampler.set_epoch(1)
    assert _order(other) == second
    images = torch.cat([x.image for x in a.val_dataloader()])
    assert torch.equal(images, torch.cat([x.image for x in b.val_dataloader()]))


def test_setup_is_idempotent(tiny_mvtec: Path, tmp_path: Path) -> None:
    dm = _dm(tiny_mvtec, tmp_path)
    dm.setup("fit")
    train = dm.dataset("train")
    dm.setup("fit")
    dm.setup("test")
    assert dm.dataset("train") is train and len(dm.dataset("test")) == 14


@pytest.mark.parametrize(
    "bad",
    [
        {"batch_size": 0},
        {"batch_size": "abc"},
        {"val_fraction": 1.0},
        {"val_fraction": -0.5},
        {"val_fraction": "some"},
        {"image_size": "big"},
        {"image_size": 4},
        {"num_workers": 1.5},
        {"seed": -1},
    ],
)
def test_bad_arguments_are_refused_by_name(tmp_path: Path, bad: dict) -> None:
    ((name, value),) = bad.items()
    with pytest.raises(SettingError, match=rf"{name}={value!r} must be") as err:
        MVTecDataModule(tmp_path, ["widget"], **bad)
    assert err.value.owner is MVTecDataModule and err.value.names == (name,)


def test_a_category_without_test_images_cannot_be_tested(tmp_path: Path) -> None:
    root = write_tiny_mvtec(tmp_path / "mvtec", n_train=4, n_test_good=1, n_per_defect=1)
    shutil.rmtree(root / "widget/test")
    dm = MVTecDataModule(root, ["widget"], image_size=16, cache_dir=tmp_path / "cache")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoTestImagesWarning)
        dm.prepare_data()
        dm.setup("fit")  # training alone is fine
        with pytest.raises(AeLabError, match=r"Nothing to test.*widget/test.*test=false"):
            dm.setup("test")
    # No cache file named after no categories (`--16px-....npz`).
    assert not [f for f in os.listdir(tmp_path / "cache") if f.startswith("-")]


# ---- the synthetic set --------------------------------------------------------------------------
def test_prepare_data_generates_when_missing_and_table_only_reads(
    tmp_path: Path, monkeypatch
) -> None:
    calls = []
    complete = {"done": False}

    def generate(out_dir, categories, **params):
        calls.append((Path(out_dir), tuple(categories), params))
        write_tiny_mvtec(Path(out_dir), n_train=4, n_test_good=1, n_per_defect=1)
        complete["done"] = True
        return Path(out_dir)

    fake = types.SimpleNamespace(
        generate=generate, is_complete=lambda out_dir, **p: complete["done"]
    )
    monkeypatch.setitem(sys.modules, "ae_lab.data.synthetic", fake)
    monkeypatch.setattr(ae_lab.data, "synthetic", fake, raising=False)
    root = tmp_path / "gen"
    dm = _dm(root, tmp_path, generate={"n_train": 4, "seed": 0})
    with pytest.raises(AeLabError, match="does not exist"):
        dm.table()  # a getter: it does not write the set
    assert calls == [] and not root.exists()
    dm.prepare_data()
    dm.prepare_data()  # already complete: no second generation
    assert calls == [(root, tuple(TINY_CATEGORIES), {"n_train": 4, "seed": 0})]
    assert len(dm.table("train")) + len(dm.table("val")) == 2 * 4


def test_generates_real_synthetic_set(tmp_path: Path) -> None:
    params = {"n_train": 4, "n_test": 6, "seed": 0, "image_size": 48}
    dm = MVTecDataModule(
        tmp_path / "syn",
        ["screw"],
        image_size=16,
        val_fraction=0.25,
        batch_size=8,
        cache_dir=tmp_path / "cache",
        generate=params,
    )
    dm.prepare_data()
    stamp = (tmp_path / "syn/screw/train/good").stat().st_mtime_ns
    dm.prepare_data()  # complete: not regenerated
    assert (tmp_path / "syn/screw/train/good").stat().st_mtime_ns == stamp
    batch = next(iter(dm.test_dataloader()))
    assert batch.image.shape == (6, 3, 16, 16) and batch.has_mask.any()
    assert len(dm.table("train")) == 3 and len(dm.table("val")) == 1


def test_parallel_runs_on_a_fresh_synthetic_root_generate_and_decode_once(tmp_path, monkeypatch):
    # Two runs as two threads: the file locks (flock) exclude each other exactly as between
    # processes, without paying two interpreters' imports.
    events = []

    def slow(name, fn):  # wide enough windows that the two runs always overlap
        def wrapped(*args, **kwargs):
            events.append(name)
            time.sleep(1)
            return fn(*args, **kwargs)

        return wrapped

    monkeypatch.setattr(synthetic, "generate", slow("generated", synthetic.generate))
    monkeypatch.setattr(datamodule, "_decode", slow("decoded", datamodule._decode))
    start = threading.Barrier(2)  # both runs start preparing the data at the same moment

    def run(_: int) -> int:
        dm = MVTecDataModule(
            tmp_path / "synthetic",
            ["cable"],
            image_size=32,
            cache_dir=tmp_path / "cache",
            generate={"n_train": 6, "n_test": 6, "seed": 0, "image_size": 32},
        )
        start.wait()
        dm.prepare_data()
        dm.setup()
        return len(dm.dataset("test"))

    with ThreadPoolExecutor(2) as pool:
        assert list(pool.map(run, range(2))) == [6, 6]
    assert events.count("generated") == 1 and events.count("decoded") == 1, events


# ---- augmentation -------------------------------------------------------------------------------
def test_augment_only_in_training(tiny_mvtec: Path, tmp_path: Path) -> None:
    dm = _dm(tiny_mvtec, tmp_path, augment=True)
    batch = next(iter(dm.train_dataloader()))
    original = batch.image.clone()
    dm.trainer = types.SimpleNamespace(training=False)
    assert torch.equal(dm.on_after_batch_transfer(batch, 0).image, original)
    dm.trainer = types.SimpleNamespace(training=True)
    torch.manual_seed(0)
    out = dm.on_after_batch_transfer(batch, 0)
    assert out.image.shape == original.shape and out.image.min() >= 0 and out.image.max() <= 1
    assert not torch.equal(out.image, original)
    assert (out.image - original).abs().mean() < 0.2  # mild
    assert torch.equal(batch.image, original) and out.path == batch.path  # a new batch


class _Recorder(lightning.LightningModule):
    """Records training batches as the step sees them (after the datamodule's hooks)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))
        self.seen: list[Batch] = []

    def training_step(self, batch, batch_idx):
        self.seen.append(replace(batch, image=batch.image.clone()))
        return (batch.image.mean() - self.weight) ** 2

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.filterwarnings("ignore:You passed in a `val_dataloader`")
def test_trainer_applies_augmentation(tiny_mvtec: Path, tmp_path: Path) -> None:
    dm = _dm(tiny_mvtec, tmp_path, augment=True)
    model = _Recorder()
    trainer = lightning.Trainer(
        max_epochs=1,
        limit_train_batches=2,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(model, datamodule=dm)
    assert len(model.seen) == 2
    raw = dm.dataset("train")
    for batch in model.seen:
        clean = raw.__getitems__(batch.index.tolist()).image
        assert batch.image.shape == clean.shape and not torch.equal(batch.image, clean)


# ---- the decode cache ---------------------------------------------------------------------------
C = 16  # cache tests decode at 16 px


def _rows(root: Path) -> pd.DataFrame:
    df = scan_mvtec(root, TINY_CATEGORIES)
    return df[df["split"] == "test"]


def _forbid_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args, **kwargs):
        raise AssertionError("decoded although the cache is valid")

    monkeypatch.setattr(datamodule, "load_image", fail)
    monkeypatch.setattr(datamodule, "load_mask", fail)


def test_cache_built_once_then_reused(tiny_mvtec: Path, tmp_path: Path, monkeypatch) -> None:
    rows = _rows(tiny_mvtec)
    images, masks = load_or_build(rows, C, tmp_path)
    assert images.shape == (len(rows), 3, C, C) and images.dtype == np.uint8
    assert masks.shape == (len(rows), C, C) and masks.dtype == bool
    for i in (0, len(rows) - 1):
        assert (images[i] == load_image(rows["path"].iloc[i], C).transpose(2, 0, 1)).all()
    has_mask = rows["mask_path"].notna().to_numpy()
    assert masks[has_mask].any(axis=(1, 2)).all() and not masks[~has_mask].any()
    _forbid_decoding(monkeypatch)
    again, again_masks = load_or_build(rows, C, tmp_path)
    assert (again == images).all() and (again_masks == masks).all()
    # A different size is a different cache.
    with pytest.raises(AssertionError, match="decoded"):
        load_or_build(rows, C * 2, tmp_path)


def test_cache_rebuilt_when_sources_change(tiny_mvtec: Path, tmp_path: Path, monkeypatch) -> None:
    rows = _rows(Path(shutil.copytree(tiny_mvtec, tmp_path / "mvtec")))
    before, _ = load_or_build(rows, C, tmp_path)
    first = Path(rows["path"].iloc[0])
    Image.fromarray(np.full((36, 40, 3), 255, np.uint8)).save(first)
    os.utime(first, ns=(1, 1))  # a distinct mtime even on coarse-clock filesystems
    after, _ = load_or_build(rows, C, tmp_path)
    assert (after[0] == 255).all() and not (before[0] == 255).all()
    assert (after[1:] == before[1:]).all()
    # Masks are part of the key too.
    os.utime(rows["mask_path"].dropna().iloc[0], ns=(2, 2))
    _forbid_decoding(monkeypatch)
    with pytest.raises(AssertionError, match="decoded"):
        load_or_build(rows, C, tmp_path)


def test_unusable_cache_folder_decodes_without_it(tiny_mvtec: Path, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    with pytest.warns(UserWarning, match="decoding without it.*AE_LAB_CACHE"):
        images, masks = load_or_build(_rows(tiny_mvtec), C, tmp_path / "file" / "cache")
    n = len(_rows(tiny_mvtec))
    assert images.shape == (n, 3, C, C) and masks.shape == (n, C, C)


def test_default_cache_folder_follows_env(tiny_mvtec: Path, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AE_LAB_CACHE", str(tmp_path / "here"))
    load_or_build(_rows(tiny_mvtec), C)
    assert list((tmp_path / "here").rglob("output.pkl"))
