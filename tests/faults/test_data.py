"""Fault suite, data (issue 28): odd files and folders, huge images, a stale or half-built decode
cache, too many workers, and test sets with one label only. Each case checks the outcome: refused
before training naming the file, a warning naming it, or a correct result.

Already covered elsewhere (not repeated here): truncated PNG and text-as-PNG files
(tests/test_cache.py::test_unreadable_files_name_the_file), RGBA / 16-bit / palette / CMYK / LA
(test_cache.py::test_conversions_keep_values, ::test_odd_files_become_rgb_uint8), `.PNG` / `.bmp`
/ `.tiff` scanning (test_table.py::test_scan_extensions_and_mask_names), masks of another size
(test_reliability.py::test_mask_of_another_size_is_left_out_of_pixel_metrics), 0/1 masks
(test_cache.py::test_masks_are_binarised_and_resized), a missing mask
(test_table.py::test_missing_mask_warns_and_keeps_image), edited files and masks
(test_cache.py::test_cache_rebuilt_when_sources_change), two builders at once
(test_reliability.py::test_parallel_runs_on_a_fresh_synthetic_root_generate_and_decode_once),
one-label metrics (test_metrics.py::test_degenerate_groups_warn_and_skip).
"""

from __future__ import annotations

import logging
import os
import resource
import shutil
import signal
import struct
import sys
import threading
import time
import warnings
import zlib
from pathlib import Path

import joblib.numpy_pickle
import numpy as np
import pytest
from PIL import Image

from ae_lab.data import datamodule as cache
from ae_lab.data.datamodule import MVTecDataModule
from ae_lab.data.table import (
    BrokenLinkWarning,
    EmptyFolderWarning,
    load_image,
    load_mask,
    scan_mvtec,
)
from ae_lab.errors import AeLabError
from ae_lab.metrics import image_metrics
from tests.conftest import write_tiny_mvtec

S = 16
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork and /proc")


def small_tree(root: Path, **kwargs) -> Path:
    """widget (RGB) and screw (grey): 4 train, 1 good and 1 per defect test image each."""
    return write_tiny_mvtec(root, **{"n_train": 4, "n_test_good": 1, "n_per_defect": 1, **kwargs})


def dm(root: Path, tmp_path: Path, categories=("widget",), **kwargs) -> MVTecDataModule:
    args = {"image_size": S, "batch_size": 4, "val_fraction": 0.25, "cache_dir": tmp_path / "c"}
    return MVTecDataModule(root, list(categories), **{**args, **kwargs})


def decoded(rows) -> tuple[np.ndarray, np.ndarray]:
    """What the cache must hold: every row decoded now, without any cache."""
    images = [load_image(p, S).transpose(2, 0, 1) for p in rows["path"]]
    return np.stack(images), np.stack([load_mask(m, S) for m in rows["mask_path"]])


# ---- unreadable and odd files -------------------------------------------------------------------
@pytest.mark.parametrize("fault", ["zero-byte", "truncated-jpeg"])
def test_unreadable_file_stops_setup_naming_it_and_leaves_no_bad_cache(tmp_path, fault):
    root = small_tree(tmp_path / "mvtec")
    if fault == "zero-byte":
        bad = root / "widget/train/good/003.png"
        bad.write_bytes(b"")
    else:  # decoded through libjpeg's draft mode, unlike the PNGs of test_cache.py
        bad = root / "widget/train/good/002.jpg"
        bad.write_bytes(bad.read_bytes()[:400])
    with pytest.raises(AeLabError) as err:
        dm(root, tmp_path).prepare_data()  # what the trainer calls first, before any step
    message = str(err.value)
    assert str(bad) in message and "re-download" in message and "\n" not in message
    bad.unlink()  # the fix the message gives: the next run works
    module = dm(root, tmp_path)
    module.setup()
    assert str(bad) not in set(module.table()["path"])


def test_image_modes_without_a_test_elsewhere_become_rgb(tmp_path):
    rng = np.random.default_rng(0)
    grey = np.repeat(np.linspace(0, 255, 48).astype(np.uint8)[None], 40, axis=0)  # 40x48
    rgb = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
    files = {
        "bilevel.png": Image.fromarray(grey > 127).convert("1"),
        "deep16.tif": Image.fromarray(grey.astype(np.uint16) * 257),  # the TIFF decoder
        "deep16.png": Image.fromarray(grey.astype(np.uint16) * 257),  # I;16, resized as is
    }
    palette = Image.fromarray(rgb).convert("P")
    palette.info["transparency"] = 0  # a transparent palette entry: dropped, like RGBA's alpha
    files["palette_alpha.png"] = palette
    for name, img in files.items():
        img.save(tmp_path / name)
    out = {name: load_image(tmp_path / name, S) for name in files}
    for name, img in out.items():
        assert img.shape == (S, S, 3) and img.dtype == np.uint8, name
    eight_bit = load_image(_save(Image.fromarray(grey), tmp_path / "grey8.png"), S).astype(int)
    for name in ("deep16.tif", "deep16.png"):  # 16 bit: the 8-bit picture, scaled not clipped
        assert np.abs(out[name].astype(int) - eight_bit).max() <= 1, name
    assert set(np.unique(out["bilevel.png"])) <= set(range(256)) and out["bilevel.png"].std() > 50
    expected = load_image(_save(palette.convert("RGB"), tmp_path / "palette_rgb.png"), S)
    assert (out["palette_alpha.png"] == expected).all()


def _save(img: Image.Image, path: Path) -> Path:
    img.save(path)
    return path


def test_uppercase_extensions_are_images_and_masks(tmp_path):
    root = small_tree(tmp_path / "mvtec")
    scratch, gt = root / "widget/test/scratch", root / "widget/ground_truth/scratch"
    Image.open(scratch / "000.png").save(scratch / "000.JPG", quality=95)
    (scratch / "000.png").unlink()
    (gt / "000_mask.png").rename(gt / "000_mask.PNG")
    Image.open(root / "widget/train/good/000.png").save(root / "widget/train/good/009.JPEG")
    module = dm(root, tmp_path)
    test = module.table("test")
    row = test[test["path"] == str(scratch / "000.JPG")]
    assert len(row) == 1 and row["mask_path"].iloc[0] == str(gt / "000_mask.PNG")
    assert str(root / "widget/train/good/009.JPEG") in set(module.table()["path"])
    dataset = module.dataset("test")
    i = int(row.index[0])
    assert dataset.has_mask[i] and dataset.masks[i].any()


# ---- folders ------------------------------------------------------------------------------------
def test_symlinked_class_and_defect_folders_are_followed(tmp_path):
    elsewhere = small_tree(tmp_path / "elsewhere")
    root = tmp_path / "mvtec"
    root.mkdir()
    (root / "widget").symlink_to(elsewhere / "widget", target_is_directory=True)
    shutil.copytree(elsewhere / "screw", root / "screw", symlinks=True)
    shutil.rmtree(root / "screw/test/bent")
    (root / "screw/test/bent").symlink_to(elsewhere / "screw/test/bent")
    linked = scan_mvtec(root, ["widget", "screw"])
    plain = scan_mvtec(elsewhere, ["widget", "screw"])
    assert len(linked) == len(plain) and linked["label"].tolist() == plain["label"].tolist()
    assert linked["mask_path"].notna().sum() == plain["mask_path"].notna().sum()
    module = dm(root, tmp_path, categories=("widget", "screw"))
    module.setup()
    assert len(module.dataset("test")) == len(plain[plain["split"] == "test"])


def test_broken_symlinks_are_named_in_a_warning(tmp_path):
    root = small_tree(tmp_path / "mvtec")
    link = root / "widget/train/good/010.png"
    link.symlink_to(tmp_path / "gone.png")
    with pytest.warns(BrokenLinkWarning, match=str(link)) as record:
        table = scan_mvtec(root, ["widget"])
    assert str(link) not in set(table["path"]) and "gone.png" in str(record[0].message)
    (root / "carpet").symlink_to(tmp_path / "moved_away", target_is_directory=True)
    with (
        pytest.warns(BrokenLinkWarning, match=str(root / "carpet")),  # says why it is unknown
        pytest.raises(AeLabError, match="carpet"),
    ):
        scan_mvtec(root, ["carpet"])


def test_spaces_and_non_ascii_in_every_path(tmp_path):
    root = small_tree(tmp_path / "datos ñandú" / "mi carpeta (ü)")
    (root / "widget").rename(root / "wïdget 1")
    module = MVTecDataModule(
        root, ["wïdget 1"], image_size=S, batch_size=4, cache_dir=tmp_path / "caché con espacio"
    )
    module.setup()
    test = module.table("test")
    assert len(test) == 3 and all("wïdget 1" in p for p in test["path"])
    batch = next(iter(module.test_dataloader()))
    paths = batch["path"] if isinstance(batch, dict) else batch.path
    assert list(paths) == test["path"].tolist()[: len(paths)]
    images, _ = decoded(test)
    assert (module.dataset("test").images == images).all()


def test_a_mask_for_a_good_image_is_ignored(tmp_path):
    root = small_tree(tmp_path / "mvtec")
    (root / "widget/ground_truth/good").mkdir()
    Image.new("L", (40, 36), 255).save(root / "widget/ground_truth/good/000_mask.png")
    module = dm(root, tmp_path)
    test = module.table("test")
    good = test.index[test["defect"] == "good"]
    assert len(good) == 1 and test.loc[good, "mask_path"].isna().all()
    dataset = module.dataset("test")
    assert not dataset.has_mask[good].any() and not dataset.masks[good].any()


def test_an_empty_defect_folder_is_named_and_left_out(tmp_path):
    root = small_tree(tmp_path / "mvtec")
    for f in (root / "widget/test/crack").iterdir():
        f.unlink()
    with pytest.warns(EmptyFolderWarning, match=str(root / "widget/test/crack")) as record:
        table = scan_mvtec(root, ["widget"])
    assert "re-download" in str(record[0].message)
    assert "crack" not in set(table["defect"]) and (table["defect"] == "scratch").sum() == 1


@pytest.mark.filterwarnings("ignore:Skipped test/f1_max")
@pytest.mark.parametrize("left", ["only defective", "only good"])
def test_a_test_set_with_one_label_reports_no_auroc(tmp_path, left):
    """Honesty: no AUROC is made up from one label; the folder and the metric are named."""
    root = small_tree(tmp_path / "mvtec")
    emptied = ["good"] if left == "only defective" else ["scratch", "crack"]
    for name in emptied:
        for f in (root / "widget/test" / name).iterdir():
            f.unlink()
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        test = dm(root, tmp_path).table("test")
    assert test["label"].nunique() == 1
    assert any(str(root / "widget/test" / emptied[0]) in str(w.message) for w in record)
    scores = test.assign(score=np.random.default_rng(0).random(len(test)))
    with pytest.warns(UserWarning, match=f"Skipped test/image_auroc.*{left}"):
        metrics = image_metrics(scores)
    assert not [k for k in metrics if "auroc" in k]


# ---- huge images --------------------------------------------------------------------------------
def _peak_growth_mb(fn) -> float:
    """How far `fn()` raises the peak resident memory (MB), measured in a forked child so that the
    test process's own history does not count."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(read)
            base = int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            fn()
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            os.write(write, str((peak - base) / 2**20).encode())
        except BaseException as exc:
            os.write(write, f"error {exc!r}".encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        answer = pipe.read()
    os.waitpid(pid, 0)
    assert not answer.startswith("error"), answer
    return float(answer)


@linux_only
@pytest.mark.parametrize("kind", ["rgb", "16-bit"])
def test_a_6000px_image_decodes_in_about_its_own_size(tmp_path, kind):
    side = 6000
    ramp = np.linspace(0, 255, side, dtype=np.float32)
    if kind == "rgb":
        grey = Image.fromarray(np.broadcast_to(ramp.astype(np.uint8), (side, side)).copy())
        img, decoded_mb = Image.merge("RGB", [grey, grey, grey]), 3 * side * side / 2**20
    else:
        img = Image.fromarray(np.broadcast_to((ramp * 257).astype(np.uint16), (side, side)).copy())
        decoded_mb = 2 * side * side / 2**20
    path = _save(img, tmp_path / "huge.png")
    del img
    growth = _peak_growth_mb(lambda: load_image(path, 128))
    # The decoded image itself is needed once; copies (EXIF transpose, same-mode convert, float64
    # arithmetic on 36 M pixels) cost 2.5x (RGB) and 9x (16 bit) of it before the fix.
    assert growth < 2 * decoded_mb, f"{growth:.0f} MB for a {decoded_mb:.0f} MB image"
    out = load_image(path, 128).astype(int)
    assert out.shape == (128, 128, 3) and out[:, 0].max() < 10 and out[:, -1].min() > 245
    assert np.all(np.diff(out[64, :, 0]) >= 0)  # the ramp survives the resize


def test_a_decompression_bomb_is_refused_naming_the_file_and_the_fix(tmp_path):
    """A 20000x20000 px PNG header (over Pillow's safety limit) is not decoded at all."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", 20000, 20000, 8, 0, 0, 0, 0)
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))
    with pytest.raises(AeLabError, match="too large") as err:
        load_image(bomb, S)
    assert str(bomb) in str(err.value) and "Downscale" in str(err.value)


# ---- the decode cache ---------------------------------------------------------------------------
def _forbid_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args, **kwargs):
        raise AssertionError("decoded although the cache is valid")

    monkeypatch.setattr(cache, "load_image", fail)


def test_an_image_replaced_with_the_same_size_and_mtime_is_decoded_again(tmp_path):
    """`cp -p` or an archive unpacked again keep size and mtime: the content still counts."""
    folder = tmp_path / "mvtec/widget/train/good"
    (tmp_path / "mvtec/widget/test/good").mkdir(parents=True)
    folder.mkdir(parents=True)
    for i, value in enumerate((10, 200)):
        Image.new("RGB", (32, 32), (value, value, value)).save(folder / f"{i:03d}.bmp")
    shutil.copy(folder / "001.bmp", tmp_path / "mvtec/widget/test/good/000.bmp")
    rows = scan_mvtec(tmp_path / "mvtec", ["widget"])
    first = Path(rows["path"].iloc[0])
    before, _ = cache.load_or_build(rows, S, tmp_path / "cache")
    assert (before[0] == 10).all()
    for replace_by in ("overwrite", "rename"):  # cp -p over the file; mv of a new file onto it
        stat = first.stat()
        new = folder / "new.tmp" if replace_by == "rename" else first
        value = 90 if replace_by == "overwrite" else 160
        Image.new("RGB", (32, 32), (value,) * 3).save(new, format="BMP")
        os.utime(new, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        if replace_by == "rename":
            new.replace(first)
        assert (first.stat().st_size, first.stat().st_mtime_ns) == (stat.st_size, stat.st_mtime_ns)
        after, _ = cache.load_or_build(rows, S, tmp_path / "cache")
        assert (after[0] == value).all(), f"{replace_by}: the stale image was served"
        assert (after[1] == 200).all()


@linux_only
@pytest.mark.parametrize("killed_while", ["decoding", "writing"])
def test_a_builder_killed_mid_build_leaves_a_correct_cache_and_no_deadlock(
    tmp_path, monkeypatch, killed_while
):
    """Two processes build one cache; the one holding the lock is SIGKILLed while it decodes or
    while joblib writes the arrays. The other one and a later run get the right arrays."""
    root = small_tree(tmp_path / "mvtec")
    rows = scan_mvtec(root, ["widget", "screw"])
    cache_dir, started = tmp_path / "cache", tmp_path / "started"
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the victim
        try:
            if killed_while == "decoding":
                real = cache.load_image

                def stuck(path, size):
                    started.touch()
                    time.sleep(60)
                    return real(path, size)

                cache.load_image = stuck
            else:
                real_dump = joblib.numpy_pickle.dump

                def half_written(value, f, **kwargs):
                    real_dump(value, f, **kwargs)
                    f.truncate(f.tell() // 2)
                    f.flush()
                    started.touch()
                    time.sleep(60)

                joblib.numpy_pickle.dump = half_written
            cache.load_or_build(rows, S, cache_dir)
        finally:
            os._exit(0)
    try:
        deadline = time.monotonic() + 60
        while not started.exists():
            assert time.monotonic() < deadline, "the victim never started building"
            time.sleep(0.05)
        result = {}
        survivor = threading.Thread(
            target=lambda: result.update(out=cache.load_or_build(rows, S, cache_dir)), daemon=True
        )
        survivor.start()
        time.sleep(0.3)
        assert survivor.is_alive()  # waiting for the victim's lock
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    survivor.join(60)
    assert not survivor.is_alive(), "the lock of the killed builder was never released"
    images, masks = decoded(rows)
    assert (result["out"][0] == images).all() and (result["out"][1] == masks).all()
    _forbid_decoding(monkeypatch)  # a later run reads what the survivor stored
    later_images, later_masks = cache.load_or_build(rows, S, cache_dir)
    assert (later_images == images).all() and (later_masks == masks).all()


# ---- DataLoader workers -------------------------------------------------------------------------
def test_more_workers_than_cores_are_clamped_in_one_line(tmp_path, caplog):  # issue 28 item 5
    root = small_tree(tmp_path / "mvtec")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    with caplog.at_level(logging.INFO):
        module = dm(root, tmp_path, num_workers=cores + 62)
    lines = [r.getMessage() for r in caplog.records if "num_workers" in r.getMessage()]
    assert len(lines) == 1 and f"num_workers={cores + 62}" in lines[0]
    assert f"{cores} CPU cores" in lines[0] and "data.num_workers" in lines[0]
    assert module.num_workers == cores
    loader = module.val_dataloader()
    assert loader.num_workers == cores
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's "excessive worker creation" warning
        loader.check_worker_number_rationality()
    caplog.clear()
    assert dm(root, tmp_path, num_workers=cores).num_workers == cores and not caplog.records
