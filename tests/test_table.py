"""Scanning an MVTec-layout tree into the image table, and the train/val split."""

import shutil
from pathlib import Path

import pytest
from PIL import Image

from ae_lab.data.table import COLUMNS, MissingMaskWarning, scan_mvtec, split_train_val
from ae_lab.errors import AeLabError
from tests.conftest import TINY_CATEGORIES, TINY_N_TRAIN


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
    for f in sorted((tiny_copy / "screw/train/good").iterdir())[1:]:  # issue 20
        f.unlink()
    df = scan_mvtec(tiny_copy, TINY_CATEGORIES)
    with pytest.warns(UserWarning, match=r"'screw' has 1 training image.*data\.val_fraction=0\.25"):
        split = split_train_val(df, 0.25, seed=0)
    assert (split.loc[split["category"] == "screw", "split"] == "train").sum() == 1
