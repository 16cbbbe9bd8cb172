"""The synthetic MVTec-layout generator: layout, masks, nuisances, determinism, marker, CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ae_lab.data import synthetic
from ae_lab.data.datamodule import MVTecDataModule
from ae_lab.data.synthetic import (
    MASK_THRESHOLD,
    ODD_EXTRA,
    generate,
    is_complete,
    read_marker,
    render_sample,
)
from ae_lab.data.synthetic import __main__ as cli
from ae_lab.data.synthetic.objects import GENERIC_DEFECTS, design_for
from ae_lab.data.table import MissingMaskWarning, scan_mvtec
from ae_lab.errors import AeLabError

CATS = ("cable", "capsule", "screw", "transistor", "widget")
PARAMS = dict(categories=CATS, n_train=6, n_test=6, seed=3, image_size=64)
IMAGE_EXT = {".png", ".jpg"}


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate(tmp_path_factory.mktemp("syn") / "data", **PARAMS)


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix in IMAGE_EXT)


def test_layout_is_exactly_mvtec(root: Path) -> None:
    record = read_marker(root)
    assert record is not None and record["params"]["categories"] == list(CATS)
    for cat in CATS:
        defects = record["categories"][cat]["defects"]
        assert 2 <= len(defects) <= 4
        names = sorted(p.name for p in (root / cat).iterdir())
        assert names == [".synthetic", "ground_truth", "test", "train"]  # + ownership stamp
        assert [p.name for p in (root / cat / "train").iterdir()] == ["good"]
        assert len(_images(root / cat / "train" / "good")) == 6
        assert sorted(p.name for p in (root / cat / "test").iterdir()) == sorted(["good", *defects])
        assert sorted(p.name for p in (root / cat / "ground_truth").iterdir()) == sorted(defects)
        n_good = len(_images(root / cat / "test" / "good"))
        n_test = sum(len(_images(root / cat / "test" / d)) for d in ["good", *defects])
        assert n_test == 6 and n_good == 2
        for defect in defects:
            images = _images(root / cat / "test" / defect)
            masks = sorted((root / cat / "ground_truth" / defect).iterdir())
            assert images and [m.name for m in masks] == [f"{p.stem}_mask.png" for p in images]
            for image, mask_path in zip(images, masks, strict=True):
                mask = Image.open(mask_path)
                assert mask.mode == "L" and mask.size == Image.open(image).size
                values = np.unique(np.asarray(mask))
                assert set(values) <= {0, 255} and 255 in values


def test_screw_is_single_channel_and_colour_categories_are_rgb(root: Path) -> None:
    nuisance = read_marker(root)["categories"]
    for cat in CATS:
        for path in (root / cat).glob("t*/*/*.*"):
            rel = path.relative_to(root).as_posix()
            kinds = nuisance[cat]["nuisances"].get(rel, [])
            expected = "L" if cat == "screw" or "grayscale" in kinds else "RGB"
            expected = "RGBA" if "rgba" in kinds else expected
            assert Image.open(path).mode == expected, rel


def test_nuisances_are_listed_and_real(root: Path) -> None:
    record = read_marker(root)
    every = {"illumination", "pose", "jpeg", "grayscale", "rgba", "odd_size"}
    assert set(record["nuisance_rates"]) == every
    for cat in CATS:
        listed = record["categories"][cat]["nuisances"]
        kinds = {k for ks in listed.values() for k in ks}
        colour = {"grayscale", "rgba"} if cat != "screw" else set()
        assert kinds == {"illumination", "pose", "jpeg", "odd_size"} | colour
        for split in ("train", "test"):
            split_kinds = {k for p, ks in listed.items() if p.split("/")[1] == split for k in ks}
            assert {"jpeg", "odd_size"} | colour <= split_kinds
        for kind in ("illumination", "pose"):  # on good AND defective test images
            folders = {p.split("/")[2] for p, ks in listed.items() if kind in ks}
            assert "good" in folders and folders - {"good"}
        for rel, ks in listed.items():
            path = root / rel
            image = Image.open(path)
            image.load()
            assert (path.suffix == ".jpg") == ("jpeg" in ks)
            width = 64 + ODD_EXTRA if "odd_size" in ks else 64
            assert image.size == (width, 64)
            if path.parts[-2] != "good":
                mask = root / cat / "ground_truth" / path.parts[-2] / f"{path.stem}_mask.png"
                assert Image.open(mask).size == image.size


def test_masks_cover_exactly_what_the_defect_changed() -> None:
    for cat in CATS:
        design = design_for(cat)
        for d_idx, defect in enumerate(design.defects):
            key = [1, d_idx, 7]
            clean, _ = render_sample(design, 64, key, "good", set())
            dirty, mask = render_sample(design, 64, key, defect, set())
            diff = np.abs(clean.astype(int) - dirty.astype(int)).max(-1)
            # Same pose, look and camera noise: outside the mask only sub-threshold changes.
            assert diff[~mask].max() <= MASK_THRESHOLD * 255 * 1.15 + 1, (cat, defect)
            assert diff[mask].mean() > 2 * MASK_THRESHOLD * 255, (cat, defect)
            assert mask.mean() < 0.5, (cat, defect)


def test_unknown_names_get_the_procedural_plate() -> None:
    widget = design_for("widget")
    assert widget.defects == GENERIC_DEFECTS and not widget.grayscale


def test_same_seed_gives_identical_bytes(root: Path, tmp_path: Path) -> None:
    # Each class depends only on (seed, name, sizes): regenerating two of them is enough.
    cats = ["screw", "widget"]
    again = generate(tmp_path / "again", **{**PARAMS, "categories": cats})
    files = sorted(p.relative_to(again) for c in cats for p in (again / c).rglob("*.*g"))
    assert len(files) > 30
    assert files == sorted(p.relative_to(root) for c in cats for p in (root / c).rglob("*.*g"))
    assert all((root / f).read_bytes() == (again / f).read_bytes() for f in files)
    other = generate(tmp_path / "other", **{**PARAMS, "categories": ["screw"], "seed": 4})
    shared = [f for f in files if (other / f).exists()]
    assert shared and all((other / f).read_bytes() != (root / f).read_bytes() for f in shared)


def test_is_complete_matches_parameters(root: Path, tmp_path: Path) -> None:
    assert is_complete(root, **PARAMS)
    assert is_complete(root, **{**PARAMS, "categories": list(CATS)})
    assert not is_complete(root, **{**PARAMS, "n_train": 7})
    # A subset of the generated classes is served by the same folder (same images: each class
    # depends only on seed, name and sizes); a class it lacks is not.
    assert is_complete(root, **{**PARAMS, "categories": [CATS[0]]})
    assert not is_complete(root, **{**PARAMS, "categories": [CATS[0], "zipper"]})
    assert not is_complete(root, **{**PARAMS, "seed": 0})
    assert not is_complete(tmp_path / "nothing", **PARAMS)


def test_one_class_run_keeps_the_other_generated_classes(root: Path, tmp_path: Path) -> None:
    # Before: `data.categories=[cable]` on a four-class folder regenerated it with cable alone,
    # deleting the other classes under any parallel run reading them.
    out = tmp_path / "shared"
    shutil.copytree(root, out)
    before = {p: p.read_bytes() for p in out.rglob("*.png")}
    sizes = {k: v for k, v in PARAMS.items() if k != "categories"}
    dm = MVTecDataModule(out, categories=[CATS[0]], generate=sizes, cache_dir=tmp_path)
    dm.prepare_data()
    assert {p: p.read_bytes() for p in out.rglob("*.png")} == before
    # A new class is added beside the kept ones, and the marker lists them all.
    generate(out, **{**PARAMS, "categories": ["zipper"]})
    assert all((out / c).is_dir() for c in [*CATS, "zipper"])
    assert is_complete(out, **{**PARAMS, "categories": [*CATS, "zipper"]})
    assert (out / f"{CATS[0]}/train/good/000.png").read_bytes() == before[
        out / f"{CATS[0]}/train/good/000.png"
    ]


def test_interrupted_run_leaves_no_marker_and_no_temp(tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "data"
    small = dict(categories=["cable", "screw"], n_train=2, n_test=5, image_size=32)
    generate(out, **small)
    real = synthetic._write_category

    def crash(root, category, p):
        if category == "screw":
            raise KeyboardInterrupt
        return real(root, category, p)

    monkeypatch.setattr(synthetic, "_write_category", crash)
    with pytest.raises(KeyboardInterrupt):
        generate(out, **{**small, "seed": 1})
    assert [p.name for p in tmp_path.iterdir()] == ["data"]  # temp folder removed
    assert is_complete(out, **small)  # the previous complete set is untouched
    monkeypatch.undo()
    generate(out, **{**small, "categories": ["screw"]})
    # Same settings: cable stays beside the new screw; other settings replace the whole set.
    assert sorted(p.name for p in out.iterdir()) == ["cable", "screw", "synthetic.json"]
    generate(out, **{**small, "categories": ["screw"], "seed": 2})
    assert sorted(p.name for p in out.iterdir()) == ["screw", "synthetic.json"]


def test_never_overwrites_folders_it_did_not_write(tmp_path: Path) -> None:
    real = tmp_path / "mvtec" / "screw" / "train" / "good" / "000.png"
    real.parent.mkdir(parents=True)
    real.write_bytes(b"real data")
    with pytest.raises(AeLabError, match="did not write"):
        generate(tmp_path / "mvtec", categories=["screw"], n_train=1, n_test=5, image_size=32)
    assert real.read_bytes() == b"real data" and len(list(tmp_path.iterdir())) == 1


def test_rejects_impossible_parameters(tmp_path: Path) -> None:
    with pytest.raises(AeLabError, match="n_test >= 5"):
        generate(tmp_path, categories=["cable"], n_test=4)
    with pytest.raises(AeLabError, match="categories"):
        generate(tmp_path, categories=["../evil"])
    assert not any(tmp_path.iterdir())


def test_cli_help_and_write(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    args = [str(tmp_path / "cli"), "--categories", "screw", "--n-train", "3", "--n-test", "5"]
    args += ["--image-size", "32", "--seed", "2"]
    cmd = [sys.executable, "-m", "ae_lab.data.synthetic", *args]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert str(tmp_path / "cli") in run.stdout and "train/good 3" in run.stdout
    params = json.loads((tmp_path / "cli" / "synthetic.json").read_text())["params"]
    assert params == dict(categories=["screw"], n_train=3, n_test=5, seed=2, image_size=32)
    assert len(list((tmp_path / "cli/screw/train/good").iterdir())) == 3
    assert cli.main(args) == 0 and "already complete" in capsys.readouterr().out
    assert cli.main([str(tmp_path / "x"), "--n-test", "2"]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "n_test >= 5" in err and "Traceback" not in err
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    help_ = capsys.readouterr().out
    assert "--n-train" in help_ and "OUT_DIR" in help_ and "MVTec AD's folder layout" in help_


def test_the_generated_set_scans_as_mvtec_with_a_mask_per_defect(synthetic_root: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", MissingMaskWarning)
        df = scan_mvtec(synthetic_root, ["cable", "screw"])
    for category in ("cable", "screw"):
        sub = df[df["category"] == category]
        assert (sub["split"] == "train").sum() == 12 and (sub["split"] == "test").sum() == 8
        assert sub["label"].sum() > 0 and sub.loc[sub["label"] == 1, "mask_path"].notna().all()
