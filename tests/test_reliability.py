"""Regression tests of issue 13: bad settings and faults never lose a run or report a false result,
and every bad value names its key."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig
from PIL import Image

from ae_lab.data import datamodule as cache
from ae_lab.data import synthetic
from ae_lab.data.datamodule import MVTecDataModule
from ae_lab.data.table import MaskSizeWarning, NoTestImagesWarning, scan_mvtec
from ae_lab.errors import AeLabError
from ae_lab.module import AutoencoderModule, NonFiniteLossError, non_finite_tensors
from ae_lab.training import build_module, train
from tests.compose import compose_config, tiny_overrides
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
        MVTecDataModule(root, ["widget", "widget"], image_size=16).prepare_data()
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


def test_read_only_cache_folder_runs_without_the_cache(tiny_mvtec, tmp_path):  # item 12
    rows = scan_mvtec(tiny_mvtec, ["widget"])
    (tmp_path / "read-only").write_text("a file where the cache folder should be")
    with pytest.warns(UserWarning, match="decoding without it"):
        images, masks = cache.load_or_build(rows, 16, tmp_path / "read-only" / "cache")
    assert images.shape == (len(rows), 3, 16, 16) and masks.shape == (len(rows), 16, 16)


@pytest.mark.parametrize(
    ("key", "value"),
    [("batch_size", "abc"), ("image_size", "big"), ("val_fraction", "some"), ("num_workers", 1.5)],
)
def test_data_values_of_the_wrong_type_name_the_key(tmp_path, key, value):  # item 13
    with pytest.raises(AeLabError, match=rf"`data\.{key}` must be .*{value!r}"):
        MVTecDataModule(tmp_path, ["widget"], **{key: value})


def test_parallel_runs_on_a_fresh_synthetic_root_generate_and_decode_once(tmp_path, monkeypatch):
    # item 4. Two runs as two threads: the file locks (flock) exclude each other exactly as
    # between processes, without paying two interpreters' imports.
    events = []

    def slow(name, fn):  # wide enough windows that the two runs always overlap
        def wrapped(*args, **kwargs):
            events.append(name)
            time.sleep(1)
            return fn(*args, **kwargs)

        return wrapped

    monkeypatch.setattr(synthetic, "generate", slow("generated", synthetic.generate))
    monkeypatch.setattr(cache, "_decode", slow("decoded", cache._decode))
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


# ---- training -----------------------------------------------------------------------------------
CATEGORIES = ["widget", "screw"]


def tiny(root: Path, out: Path, *extra: str) -> DictConfig:
    return compose_config([*tiny_overrides(root, out, CATEGORIES), *extra])


def checkpoints_are_finite(folder: Path) -> list[Path]:
    files = sorted(folder.glob("*.ckpt"))
    for file in files:
        state = torch.load(file, map_location="cpu", weights_only=False)["state_dict"]
        assert not non_finite_tensors(state), file
    return files


@pytest.mark.slow
def test_no_validation_images_with_wandb_keeps_the_checkpoint(tiny_mvtec, tmp_path, caplog):  # 1
    overrides = [o for o in tiny_overrides(tiny_mvtec, tmp_path, CATEGORIES) if o != "logger=none"]
    cfg = compose_config([*overrides, "logger=wandb", "data.val_fraction=0", "media.n_images=4"])
    result = train(cfg)
    assert Path(result["last_checkpoint"]).is_file()
    assert 0.0 <= result["test/image_auroc"] <= 1.0
    skipped = [r for r in caplog.records if "validation media skipped" in r.getMessage()]
    assert len(skipped) == 1


def test_media_errors_never_stop_the_run(caplog):  # 1: a callback error must not cost the run
    from ae_lab.callbacks import WandbMediaCallback

    class Broken(WandbMediaCallback):
        def _log_val_media(self, *args, **kwargs):
            raise RuntimeError("stack expects a non-empty TensorList")

    callback = Broken()
    callback._last_epoch = 0
    callback.on_train_end(object(), object())  # logged, not raised
    assert "on_train_end failed" in caplog.text and "non-empty TensorList" in caplog.text


@pytest.mark.slow
def test_diverging_run_saves_no_non_finite_checkpoint_and_says_so(tiny_mvtec, tmp_path):  # 2
    cfg = tiny(tiny_mvtec, tmp_path, "optimizer.lr=1e8", "trainer.max_epochs=3")
    with pytest.raises(NonFiniteLossError) as caught:
        train(cfg)
    message = str(caught.value)
    files = checkpoints_are_finite(tmp_path / "checkpoints")
    if files:
        assert str(tmp_path / "checkpoints" / "last.ckpt") in message
    else:
        assert "No checkpoint was saved" in message
    assert "gradient_clip_val" not in message  # clipping is already on in trainer=default
    # The configured value, not the one-cycle schedule's current (warm-up) one: issue 20.
    assert "optimizer.lr=1e+08 now" in message


@pytest.mark.slow
def test_full_disk_while_checkpointing_leaves_no_truncated_checkpoint(
    tiny_mvtec, tmp_path, monkeypatch
):  # issue 20, item 4
    import lightning.fabric.plugins.io.torch_io as torch_io

    saves = []

    def disk_full_after_the_first_epoch(checkpoint, path):
        # By step, not by the saved `epoch` (it reads 1 or 2 depending on which hook saved).
        saves.append(checkpoint["global_step"])
        if checkpoint["global_step"] > saves[0]:
            Path(path).write_bytes(b"PK\x03\x04 half a zip")  # what a full disk leaves behind
            raise OSError(errno.ENOSPC, "No space left on device")
        torch.save(checkpoint, path)

    monkeypatch.setattr(torch_io, "_atomic_save", disk_full_after_the_first_epoch)
    with pytest.raises(
        AeLabError, match=r"Could not write the checkpoint.*No space left.*ckpt_path"
    ):
        train(tiny(tiny_mvtec, tmp_path, "trainer.max_epochs=2"))
    files = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert "last.ckpt" in files and not [f for f in files if f.endswith(".tmp")], files
    for file in (tmp_path / "checkpoints").glob("*.ckpt"):
        assert torch.load(file, weights_only=False)["global_step"] == saves[0]  # complete, epoch 0


def test_wandb_without_network_or_key_says_so_in_one_line(monkeypatch, capsys):  # issue 20
    from ae_lab.callbacks import ensure_wandb_mode

    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.delenv("WANDB_MODE")
    assert ensure_wandb_mode() == "offline" and os.environ["WANDB_MODE"] == "offline"
    assert "does not answer" in capsys.readouterr().out
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.delenv("WANDB_API_KEY")
    monkeypatch.setenv("NETRC", os.devnull)
    with pytest.raises(AeLabError, match=r"wandb login.*WANDB_MODE=offline.*logger=none"):
        ensure_wandb_mode()


@pytest.mark.slow
def test_weights_that_blow_up_behind_a_finite_loss_are_caught(tiny_mvtec, tmp_path, monkeypatch):
    # item 2: BatchNorm can keep the loss finite while weights and statistics are NaN/inf.
    def poison(self):
        if self.current_epoch == 1:
            with torch.no_grad():
                next(b for n, b in self.named_buffers() if "running_var" in n).fill_(float("inf"))

    monkeypatch.setattr(AutoencoderModule, "on_train_epoch_start", poison, raising=False)
    with pytest.raises(NonFiniteLossError, match=r"running_var.*last\.ckpt is the last one"):
        train(tiny(tiny_mvtec, tmp_path, "trainer.max_epochs=3"))
    files = checkpoints_are_finite(tmp_path / "checkpoints")
    assert [torch.load(f, weights_only=False)["epoch"] for f in files] == [0, 0]  # best + last


def test_zero_epochs_reports_no_result(tiny_mvtec, tmp_path):  # item 6
    with pytest.raises(AeLabError, match=r"trainer\.max_epochs=0.*random weights"):
        train(tiny(tiny_mvtec, tmp_path, "trainer.max_epochs=0"))


def test_category_without_test_images_stops_before_training(tmp_path):  # item 7
    root = small_tree(tmp_path / "mvtec")
    shutil.rmtree(root / "widget/test")
    cfg = compose_config([*tiny_overrides(root, tmp_path / "run", ["widget"])])
    with pytest.warns(NoTestImagesWarning), pytest.raises(AeLabError, match="Nothing to test"):
        train(cfg)
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize("lr", ["-1", "fast"])
def test_bad_learning_rate_names_the_key(lr):  # item 13
    with pytest.raises(AeLabError, match=rf"optimizer\.lr=.*{lr}.*optimizer\.lr=1e-3"):
        build_module(compose_config([f"optimizer.lr={lr}", "logger=none"]))


@pytest.fixture(scope="module")
def ae_checkpoint(tiny_mvtec, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ae_run")
    return Path(train(tiny(tiny_mvtec, out, "test=false"))["last_checkpoint"])


@pytest.mark.slow
def test_checkpoint_of_another_model_says_which_model_it_holds(ae_checkpoint, tiny_mvtec, tmp_path):
    cfg = tiny(tiny_mvtec, tmp_path, "model=unet", "train=false", f"ckpt_path={ae_checkpoint}")
    with pytest.raises(AeLabError, match=r"trained with model=ae.*`model=ae model\.latent_dim=8"):
        train(cfg)  # item 14


@pytest.mark.slow
def test_truncated_or_non_finite_checkpoint_is_one_paragraph(ae_checkpoint, tiny_mvtec, tmp_path):
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(ae_checkpoint.read_bytes()[:5000])
    cfg = tiny(tiny_mvtec, tmp_path, "train=false", f"ckpt_path={truncated}")
    with pytest.raises(AeLabError, match=r"Cannot read the checkpoint.*truncated"):
        train(cfg)  # item 14
    state = torch.load(ae_checkpoint, weights_only=False)
    next(iter(state["state_dict"].values())).fill_(float("nan"))
    torch.save(state, tmp_path / "nan.ckpt")
    cfg = tiny(tiny_mvtec, tmp_path, "train=false", f"ckpt_path={tmp_path / 'nan.ckpt'}")
    with pytest.raises(AeLabError, match="NaN/inf weights"):
        train(cfg)  # item 2: a junk checkpoint is not evaluated into a "done"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_gpu_trainer_without_gpu_suggests_the_default_trainer(tiny_mvtec, tmp_path):  # item 15
    with pytest.raises(AeLabError, match=r"trainer\.accelerator=gpu.*trainer=default"):
        train(tiny(tiny_mvtec, tmp_path, "trainer=gpu"))


@pytest.mark.parametrize(
    ("override", "says", "not_says"),
    [
        ("data.batch_size=abc", "`data.batch_size` must be an integer", "Traceback"),  # item 13
    ],
)
def test_bad_value_on_the_command_line_is_one_paragraph(tmp_path, override, says, not_says):
    """Through train.py and Hydra: exit 2, no traceback, the message names the fix."""
    proc = subprocess.run(
        [sys.executable, str(REPO / "train.py"), override, "logger=none"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert says in proc.stderr and not_says not in proc.stderr


@pytest.mark.slow
def test_ctrl_c_prints_the_resume_command(tiny_mvtec, tmp_path, monkeypatch, capsys):  # item 18
    def interrupt(self):
        if self.current_epoch == 1:  # after epoch 0's last.ckpt
            raise KeyboardInterrupt

    monkeypatch.setattr(AutoencoderModule, "on_train_epoch_start", interrupt, raising=False)
    handler = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(SystemExit) as caught:
            train(tiny(tiny_mvtec, tmp_path, "trainer.max_epochs=3"))
    finally:
        signal.signal(signal.SIGINT, handler)  # Lightning ignores further Ctrl-C while stopping
    assert caught.value.code == 130
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert last.is_file() and f"ckpt_path={last}" in capsys.readouterr().err


def test_analyze_names_a_missing_offline_dir(tmp_path, capsys):  # item 18
    import analyze

    missing = tmp_path / "MISSING"
    rc = analyze.main(["--project", "x", "--offline-dir", str(missing), "--no-wandb"])
    err = capsys.readouterr().err
    assert rc == 2 and str(missing) in err
