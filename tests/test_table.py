"""ae_lab.data.table: scanning an MVTec-layout tree into the image table, the train/val split,
and decoding image and mask files into fixed-size arrays."""

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ae_lab.data.table import (
    COLUMNS,
    MaskSizeWarning,
    MissingMaskWarning,
    NoTestImagesWarning,
    load_image,
    load_mask,
    scan_mvtec,
    split_train_val,
)
from ae_lab.errors import AeLabError
from tests.conftest import TINY_CATEGORIES, TINY_N_TRAIN

S = 16


@pytest.fixture
def tiny_copy(tiny_mvtec: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny tree that a test may modify."""
    return Path(shutil.copytree(tiny_mvtec, tmp_path / "mvtec"))


def test_scan_counts_labels_and_masks(tiny_mvtec: Path) -> None:
    df = scan_mvtec(tiny_mvtec, TINY_CATEGORIES)
    assert tuple(df.columns) == COLUMNS
    assert len(df) == 2 * (TINY_N_TRAIN + 3 + 2 + 2)
    for category in TINY_CATEGORIES:
        sub = df[df["category"] == category]
        assert (sub["split"] == "train").sum() == TINY_N_TRAIN
        assert (sub["defect"] == "good").sum() == TINY_N_TRAIN + 3
    assert set(df["split"]) == {"train", "test"}
    assert (df["label"] == (df["defect"] != "good")).all()
    assert df["label"].dtype == "int64"
    defective = df[df["label"] == 1]
    assert len(defective) == 8
    for image, mask in zip(defective["path"], defective["mask_path"], strict=True):
        assert mask == str(
            Path(image).parents[2]
            / "ground_truth"
            / Path(image).parent.name
            / f"{Path(image).stem}_mask.png"
        )
        assert Path(mask).is_file()
    assert all(m is None for m in df.loc[df["label"] == 0, "mask_path"])
    # The odd files are picked up: .jpg next to .png.
    names = set(df.loc[df["category"] == "widget", "path"].map(lambda p: Path(p).name))
    assert {"001.png", "002.jpg"} <= names


def test_scan_is_sorted_and_deterministic(tiny_mvtec: Path) -> None:
    a = scan_mvtec(tiny_mvtec, ["screw", "widget"])
    b = scan_mvtec(str(tiny_mvtec), ("screw", "widget"))
    assert a.equals(b)
    assert list(a["category"].unique()) == ["screw", "widget"]  # the requested order
    train = a[(a["category"] == "screw") & (a["split"] == "train")]["path"].tolist()
    assert train == sorted(train)
    assert scan_mvtec(tiny_mvtec, "screw")["category"].unique().tolist() == ["screw"]


def test_scan_extensions_and_mask_names(tiny_copy: Path) -> None:
    good = tiny_copy / "widget/train/good"
    shutil.copy(good / "000.png", good / "100.PNG")
    shutil.copy(good / "000.png", good / "101.bmp")
    Image.open(good / "000.png").save(good / "102.tiff")
    (good / "notes.txt").write_text("not an image")
    (good / "subdir").mkdir()
    # A mask saved as .bmp, and one named like its image (no `_mask`), are found too.
    gt = tiny_copy / "widget/ground_truth/scratch"
    Image.open(gt / "000_mask.png").save(gt / "000_mask.bmp")
    (gt / "000_mask.png").unlink()
    (gt / "001_mask.png").rename(gt / "001.png")
    df = scan_mvtec(tiny_copy, ["widget"])
    assert (df["split"] == "train").sum() == TINY_N_TRAIN + 3
    scratch = df[df["defect"] == "scratch"]
    assert [Path(m).name for m in scratch["mask_path"]] == ["000_mask.bmp", "001.png"]


def test_split_is_stratified_and_seeded(tiny_mvtec: Path) -> None:
    df = scan_mvtec(tiny_mvtec, TINY_CATEGORIES)
    split = split_train_val(df, 0.25, seed=1)
    assert set(df["split"]) == {"train", "test"}
    for category in TINY_CATEGORIES:
        counts = split.loc[split["category"] == category, "split"].value_counts()
        assert counts["val"] == 2 and counts["train"] == TINY_N_TRAIN - 2
    assert split.equals(split_train_val(df, 0.25, seed=1))
    others = [split_train_val(df, 0.25, seed=s) for s in range(2, 6)]
    assert any(not o["split"].equals(split["split"]) for o in others)
    # A category's draw does not depend on which other categories are loaded.
    alone = split_train_val(scan_mvtec(tiny_mvtec, ["screw"]), 0.25, seed=1)
    both = split[split["category"] == "screw"].reset_index(drop=True)
    assert alone["split"].tolist() == both["split"].tolist()


def test_split_edge_fractions(tiny_mvtec: Path) -> None:
    df = scan_mvtec(tiny_mvtec, TINY_CATEGORIES)
    assert "val" not in set(split_train_val(df, 0.0, seed=0)["split"])
    tiny = split_train_val(df, 0.01, seed=0)  # rounds to 0, still 1 val per category
    assert (tiny["split"] == "val").sum() == 2
    big = split_train_val(df, 0.99, seed=0)  # train keeps one image per category
    assert (big["split"] == "train").sum() == 2


def test_missing_root_explains_download(tmp_path: Path) -> None:
    with pytest.raises(AeLabError) as err:
        scan_mvtec(tmp_path / "nowhere", ["screw"])
    message = str(err.value)
    assert str(tmp_path / "nowhere") in message
    for hint in (
        "python -m ae_lab.data.download --root",
        "mvtec.com",
        "MVTEC_ROOT",
        "data.root",
        "data=synthetic",
    ):
        assert hint in message


def test_unknown_category_lists_found(tiny_mvtec: Path) -> None:
    with pytest.raises(AeLabError, match=r"carpet.*screw.*widget|carpet.*'screw', 'widget'") as err:
        scan_mvtec(tiny_mvtec, ["widget", "carpet"])
    assert "data.categories" in str(err.value)


def test_empty_train_good_names_folder(tiny_copy: Path) -> None:
    for f in (tiny_copy / "screw/train/good").iterdir():
        f.unlink()
    with pytest.raises(AeLabError, match="No training images") as err:
        scan_mvtec(tiny_copy, TINY_CATEGORIES)
    assert str(tiny_copy / "screw" / "train" / "good") in str(err.value)


def test_missing_mask_warns_and_keeps_image(tiny_copy: Path) -> None:
    (tiny_copy / "screw/ground_truth/bent/001_mask.png").unlink()
    with pytest.warns(MissingMaskWarning, match=r"001\.png") as record:
        df = scan_mvtec(tiny_copy, TINY_CATEGORIES)
    assert len(record) == 1 and str(tiny_copy / "screw/test/bent") in str(record[0].message)
    row = df[df["path"] == str(tiny_copy / "screw/test/bent/001.png")]
    assert len(row) == 1 and row["mask_path"].iloc[0] is None and row["label"].iloc[0] == 1


def test_a_category_with_one_training_image_says_it_has_no_validation(tiny_copy: Path) -> None:
    for f in sorted((tiny_copy / "screw/train/good").iterdir())[1:]:
        f.unlink()
    df = scan_mvtec(tiny_copy, TINY_CATEGORIES)
    with pytest.warns(UserWarning, match=r"'screw' has 1 training image.*data\.val_fraction=0\.25"):
        split = split_train_val(df, 0.25, seed=0)
    assert (split.loc[split["category"] == "screw", "split"] == "train").sum() == 1


def test_appledouble_files_are_skipped(tiny_copy: Path) -> None:
    (tiny_copy / "widget/train/good/._000.png").write_bytes(b"\x00\x05\x16\x07 Mac OS X metadata")
    (tiny_copy / "widget/test/good/._000.png").write_bytes(b"\x00\x05\x16\x07")
    table = scan_mvtec(tiny_copy, ["widget"])
    assert not any(Path(p).name.startswith(".") for p in table["path"])
    assert (table["split"] == "train").sum() == TINY_N_TRAIN


def test_a_class_listed_twice_is_refused(tiny_mvtec: Path) -> None:
    with pytest.raises(AeLabError, match=r"widget more than once.*\[widget,screw\]"):
        scan_mvtec(tiny_mvtec, ["widget", "screw", "widget"])


def test_category_without_test_folder_says_where_it_looked(tiny_copy: Path) -> None:
    shutil.rmtree(tiny_copy / "widget/test")
    with pytest.warns(NoTestImagesWarning, match=str(tiny_copy.resolve() / "widget" / "test")):
        table = scan_mvtec(tiny_copy, ["widget"])
    assert (table["split"] == "train").all()


def test_mask_of_another_size_is_left_out_of_pixel_metrics(tiny_copy: Path) -> None:
    mask = tiny_copy / "widget/ground_truth/scratch/000_mask.png"
    Image.open(mask).resize((20, 20)).save(mask)
    with pytest.warns(MaskSizeWarning, match=str(mask)):
        table = scan_mvtec(tiny_copy, ["widget"])
    image = str(tiny_copy / "widget/test/scratch/000.png")
    row = table[table["path"] == image].iloc[0]
    assert row["label"] == 1 and row["mask_path"] is None  # image-level only
    assert table["mask_path"].notna().sum() == 3  # the other defective images keep their masks


# ---- decoding -----------------------------------------------------------------------------------
def test_odd_files_become_rgb_uint8(tiny_mvtec: Path) -> None:
    widget, screw = tiny_mvtec / "widget/train/good", tiny_mvtec / "screw/train/good"
    assert Image.open(widget / "001.png").mode == "RGBA"
    assert Image.open(screw / "001.png").mode.startswith("I")
    assert Image.open(screw / "000.png").mode == "L"
    for path in (
        widget / "000.png",
        widget / "001.png",
        widget / "002.jpg",
        screw / "000.png",
        screw / "001.png",
    ):
        img = load_image(path, S)  # 40 x 36 sources: non-square, resized to S x S
        assert img.shape == (S, S, 3) and img.dtype == np.uint8
    for path in (screw / "000.png", screw / "001.png"):
        img = load_image(path, S)
        assert (img[..., 0] == img[..., 1]).all() and (img[..., 0] == img[..., 2]).all()
        assert 40 < img.mean() < 220  # scaled, not clipped to white


def test_conversions_keep_values(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (S, S), dtype=np.uint8)
    Image.fromarray(gray.astype(np.uint16) * 257).save(tmp_path / "deep.png")
    assert (load_image(tmp_path / "deep.png", S)[..., 0] == gray).all()
    Image.fromarray(gray.astype(np.int32) * 257).save(tmp_path / "int32.tif")  # mode "I"
    assert (load_image(tmp_path / "int32.tif", S)[..., 1] == gray).all()
    rgb = rng.integers(0, 256, (S, S, 3), dtype=np.uint8)
    rgba = np.dstack([rgb, np.zeros((S, S), np.uint8)])  # fully transparent: alpha is dropped
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    assert (load_image(tmp_path / "rgba.png", S) == rgb).all()
    Image.fromarray(rgb).convert("P").save(tmp_path / "palette.png")
    assert np.abs(load_image(tmp_path / "palette.png", S).astype(int) - rgb).mean() < 40
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=100)
    assert np.abs(load_image(tmp_path / "cmyk.jpg", S).astype(int) - rgb).mean() < 25
    Image.fromarray(gray).convert("LA").save(tmp_path / "la.png")
    assert (load_image(tmp_path / "la.png", S)[..., 2] == gray).all()


def test_resize_is_antialiased(tmp_path: Path) -> None:
    checker = (np.indices((64, 64)).sum(0) % 2 * 255).astype(np.uint8)  # 1-px checkerboard
    Image.fromarray(checker).save(tmp_path / "checker.png")
    img = load_image(tmp_path / "checker.png", 16)
    assert np.abs(img.astype(int) - 127.5).max() < 20  # averaged to grey, not aliased


def test_masks_are_binarised_and_resized(tmp_path: Path) -> None:
    assert not load_mask(None, S).any() and load_mask(None, S).shape == (S, S)
    mask = np.zeros((64, 64), np.uint8)
    mask[:32, :16] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    expected = np.zeros((S, S), bool)
    expected[: S // 2, : S // 4] = True
    out = load_mask(tmp_path / "m.png", S)
    assert out.dtype == bool and (out == expected).all()
    # JPEG-like noise around 0 and 255 is thresholded in the middle.
    noisy = np.where(mask > 0, 240, 12).astype(np.uint8)
    Image.fromarray(noisy).save(tmp_path / "noisy.png")
    assert (load_mask(tmp_path / "noisy.png", S) == expected).all()
    # Masks stored as 0/1 labels, in 8 and 16 bit.
    Image.fromarray((mask > 0).astype(np.uint8)).save(tmp_path / "label.png")
    Image.fromarray((mask > 0).astype(np.uint16)).save(tmp_path / "label16.png")
    assert (load_mask(tmp_path / "label.png", S) == expected).all()
    assert (load_mask(tmp_path / "label16.png", S) == expected).all()


def test_unreadable_files_name_the_file(tiny_mvtec: Path, tmp_path: Path) -> None:
    data = (tiny_mvtec / "widget/train/good/000.png").read_bytes()
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(AeLabError, match=r"truncated\.png") as err:
        load_image(truncated, S)
    assert "re-download" in str(err.value)
    (tmp_path / "text.png").write_text("hello")
    with pytest.raises(AeLabError, match=r"text\.png"):
        load_image(tmp_path / "text.png", S)
    with pytest.raises(AeLabError, match=r"text\.png"):
        load_mask(tmp_path / "text.png", S)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    stored = np.full((20, 40, 3), 250, np.uint8)
    stored[:, :20] = 10  # left half dark as stored; orientation 6 shows it turned 90° clockwise
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(tmp_path / "turned.jpg", exif=exif, quality=95)
    img = load_image(tmp_path / "turned.jpg", S).astype(int)
    assert img[: S // 2].mean() < 60 and img[S // 2 :].mean() > 200  # dark half on top


def test_tiny_image_is_refused_naming_the_file(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(tmp_path / "dot.png")
    with pytest.raises(AeLabError, match=r"dot\.png is 1x1 px, below the minimum of 16"):
        load_image(tmp_path / "dot.png", S)
