"""MVTecDataModule: batch contract for every loader, split determinism, generation, augmentation."""

import sys
import types
import warnings
from pathlib import Path

import lightning
import pytest
import torch

import ae_lab.data
from ae_lab.data.datamodule import MVTecDataModule
from ae_lab.data.table import MissingMaskWarning, scan_mvtec
from ae_lab.errors import AeLabError
from tests.conftest import TINY_CATEGORIES, TINY_N_TRAIN, write_tiny_mvtec

S = 32


def _dm(root: Path, tmp_path: Path, **kwargs) -> MVTecDataModule:
    args = dict(categories=TINY_CATEGORIES, image_size=S, val_fraction=0.25, batch_size=4, seed=3)
    return MVTecDataModule(root, cache_dir=tmp_path / "cache", **{**args, **kwargs})


def _all(loader) -> list[dict]:
    return list(loader)


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
        batches = _all(loader)
        for batch in batches:
            b = len(batch["path"])
            assert set(batch) == {
                "image",
                "label",
                "mask",
                "has_mask",
                "category",
                "defect",
                "path",
                "index",
            }
            assert batch["image"].dtype == torch.float32 and batch["image"].shape == (b, 3, S, S)
            assert batch["image"].min() >= 0.0 and batch["image"].max() <= 1.0
            assert batch["label"].dtype == torch.long and batch["label"].shape == (b,)
            assert batch["mask"].dtype == torch.float32 and batch["mask"].shape == (b, 1, S, S)
            assert batch["has_mask"].dtype == torch.bool and batch["has_mask"].shape == (b,)
            assert batch["index"].dtype == torch.long and batch["index"].shape == (b,)
            assert all(
                isinstance(batch[k], list) and len(batch[k]) == b
                for k in ("category", "defect", "path")
            )
            rows = table.iloc[batch["index"].numpy()]
            assert (
                batch["path"] == rows["path"].tolist()
                and batch["defect"] == rows["defect"].tolist()
            )
            assert batch["label"].tolist() == rows["label"].tolist()
            assert batch["has_mask"].tolist() == rows["mask_path"].notna().tolist()
            # Masks are non-empty exactly where a mask file exists.
            assert (batch["mask"].flatten(1).amax(1) > 0).tolist() == batch["has_mask"].tolist()
        indices = torch.cat([b["index"] for b in batches])
        assert sorted(indices.tolist()) == list(range(len(table)))
        if split != "train":
            assert indices.tolist() == list(range(len(table)))  # not shuffled
    test = dm.table("test")
    assert test["label"].sum() == 8 and (test["split"] == "test").all()
    assert set(dm.table("val")["category"]) == set(TINY_CATEGORIES)


def test_split_and_shuffle_are_seeded(tiny_mvtec: Path, tmp_path: Path) -> None:
    a, b, c = (_dm(tiny_mvtec, tmp_path, seed=s) for s in (3, 3, 4))
    assert a.table("val").equals(b.table("val"))
    assert not a.table("val")["path"].equals(c.table("val")["path"])
    order = [torch.cat([x["index"] for x in dm.train_dataloader()]).tolist() for dm in (a, b)]
    assert order[0] == order[1]
    # A new epoch reshuffles (same dataloader, next pass), still deterministically.
    loader = a.train_dataloader()
    epochs = [torch.cat([x["index"] for x in loader]).tolist() for _ in range(2)]
    assert epochs[0] != epochs[1]
    images = torch.cat([x["image"] for x in a.val_dataloader()])
    assert torch.equal(images, torch.cat([x["image"] for x in b.val_dataloader()]))


def test_setup_is_idempotent(tiny_mvtec: Path, tmp_path: Path) -> None:
    dm = _dm(tiny_mvtec, tmp_path)
    dm.setup("fit")
    train = dm.dataset("train")
    dm.setup("fit")
    dm.setup("test")
    assert dm.dataset("train") is train and len(dm.dataset("test")) == 14


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"val_fraction": 1.0}, "val_fraction"),
        ({"val_fraction": -0.5}, "val_fraction"),
    ],
)
def test_bad_settings(tiny_mvtec: Path, tmp_path: Path, kwargs: dict, match: str) -> None:
    with pytest.raises(AeLabError, match=match):
        _dm(tiny_mvtec, tmp_path, **kwargs)


def test_generates_when_missing(tmp_path: Path, monkeypatch) -> None:
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
    dm.prepare_data()
    dm.prepare_data()  # already complete: no second generation
    assert calls == [(root, tuple(TINY_CATEGORIES), {"n_train": 4, "seed": 0})]
    assert len(dm.table("train")) + len(dm.table("val")) == 2 * 4


def test_augment_only_in_training(tiny_mvtec: Path, tmp_path: Path) -> None:
    dm = _dm(tiny_mvtec, tmp_path, augment=True)
    batch = next(iter(dm.train_dataloader()))
    original = batch["image"].clone()
    dm.trainer = types.SimpleNamespace(training=False)
    assert torch.equal(dm.on_after_batch_transfer(dict(batch), 0)["image"], original)
    dm.trainer = types.SimpleNamespace(training=True)
    torch.manual_seed(0)
    out = dm.on_after_batch_transfer(dict(batch), 0)["image"]
    assert out.shape == original.shape and out.min() >= 0 and out.max() <= 1
    assert not torch.equal(out, original)
    assert (out - original).abs().mean() < 0.2  # mild


def test_scans_generated_synthetic_set(synthetic_root: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", MissingMaskWarning)
        df = scan_mvtec(synthetic_root, ["cable", "screw"])
    for category in ("cable", "screw"):
        sub = df[df["category"] == category]
        assert (sub["split"] == "train").sum() == 12 and (sub["split"] == "test").sum() == 8
        assert sub["label"].sum() > 0 and sub.loc[sub["label"] == 1, "mask_path"].notna().all()


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
    assert batch["image"].shape == (6, 3, 16, 16) and batch["has_mask"].any()
    assert len(dm.table("train")) == 3 and len(dm.table("val")) == 1


class _Recorder(lightning.LightningModule):
    """Records training batches as the step sees them (after the datamodule's hooks)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))
        self.seen: list[dict] = []

    def training_step(self, batch, batch_idx):
        self.seen.append({k: batch[k].clone() for k in ("image", "index")})
        return (batch["image"].mean() - self.weight) ** 2

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
        clean = raw.__getitems__(batch["index"].tolist())["image"]
        assert batch["image"].shape == clean.shape and not torch.equal(batch["image"], clean)
