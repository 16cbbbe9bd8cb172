"""ae_lab.checks: what is refused before anything trains: run settings that would waste the run or
report a false result, a checkpoint that cannot be read safely or does not fit the run, windows
larger than the images, nothing to test, and a model that fails on one dry batch."""

import shutil
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
from omegaconf import DictConfig, OmegaConf

from ae_lab.checks import check_checkpoint, check_run, check_settings, dry_run, load_checkpoint
from ae_lab.data.table import NoTestImagesWarning
from ae_lab.errors import AeLabError, SettingError
from ae_lab.losses import L2Loss, SSIMLoss
from ae_lab.models import ConvAutoencoder
from ae_lab.module import AutoencoderModule
from ae_lab.scoring import Scoring
from ae_lab.training import build_module, train
from tests.compose import compose_config, tiny_overrides
from tests.conftest import write_tiny_mvtec

SMALL = ["data.image_size=32", "model.net.depth=3", "model.latent_dim=8", "logger=none"]


# ---- run settings -------------------------------------------------------------------------------
def test_evaluating_needs_an_existing_checkpoint_file(tmp_path):
    with pytest.raises(AeLabError, match=r"`train=false`.*needs `ckpt_path=PATH"):
        check_settings(compose_config(["train=false"]))
    with pytest.raises(AeLabError, match=r"Checkpoint not found: ckpt_path=.*nope\.ckpt"):
        check_settings(compose_config(["train=false", f"ckpt_path={tmp_path / 'nope.ckpt'}"]))
    with pytest.raises(AeLabError, match=rf"is a folder.*ckpt_path={tmp_path / 'last.ckpt'}"):
        check_settings(compose_config([f"ckpt_path={tmp_path}"]))
    (tmp_path / "last.ckpt").touch()
    check_settings(compose_config(["train=false", f"ckpt_path={tmp_path / 'last.ckpt'}"]))


@pytest.mark.parametrize(
    "override",
    [
        "trainer.devices=1000000000",  # a process per device: it once took the machine down
        "trainer.check_val_every_n_epoch=0",  # Lightning: ZeroDivisionError mid-fit
        "trainer.log_every_n_steps=abc",  # Lightning: TypeError mid-fit
        "trainer.limit_train_batches=abc",
        "callbacks.last_checkpoint.save_top_k=abc",  # Hydra: InstantiationException
    ],
)
def test_lightning_settings_it_would_fail_on_late_are_refused_naming_the_key(override):
    key = override.split("=")[0]
    with pytest.raises(AeLabError, match=rf"^{key}="):
        check_settings(compose_config([override]))


@pytest.mark.parametrize("limit", ["0.5", "0", "3"])
def test_scoring_part_of_the_test_set_is_refused(limit):
    with pytest.raises(AeLabError, match=rf"trainer\.limit_test_batches={limit} .*test=false"):
        check_settings(compose_config([f"trainer.limit_test_batches={limit}"]))
    check_settings(compose_config([f"trainer.limit_test_batches={limit}", "test=false"]))


@pytest.mark.parametrize("seed", ["-1", "4294967296", "1.5", "true"])
def test_seed_must_be_in_numpys_range(seed):
    with pytest.raises(AeLabError, match=r"seed=.* must be an integer.*seed=42"):
        check_settings(compose_config([f"seed={seed}"]))


@pytest.mark.parametrize("epochs", ["0", "-1", "2.5"])
def test_max_epochs_must_be_a_positive_integer(epochs):
    with pytest.raises(AeLabError, match=r"trainer\.max_epochs=.* must be an integer"):
        check_settings(compose_config([f"trainer.max_epochs={epochs}"]))


def test_train_checks_the_settings_before_anything_else(tmp_path):
    with pytest.raises(AeLabError, match="ckpt_path"):
        train(compose_config(["train=false", "logger=none", f"output_dir={tmp_path}"]))
    assert not list(tmp_path.iterdir())


# ---- what needs the module and the data -------------------------------------------------------
def _data(size: int) -> SimpleNamespace:
    """The two things check_run reads from a datamodule."""
    return SimpleNamespace(image_size=size, table=lambda split: pd.DataFrame({"path": ["a"]}))


def _module(**kwargs) -> AutoencoderModule:
    net = ConvAutoencoder(image_size=16, base_channels=8, depth=2, latent_dim=8)
    return AutoencoderModule(net, kwargs.pop("loss", L2Loss()), torch.optim.Adam, **kwargs)


def test_windows_larger_than_the_images_are_refused_naming_the_argument():
    cfg = compose_config(["logger=none"])
    check_run(cfg, _module(loss=SSIMLoss(31)), _data(16))
    with pytest.raises(SettingError, match=r"window_size=33 does not fit a 16-pixel") as err:
        check_run(cfg, _module(loss=SSIMLoss(33)), _data(16))
    assert err.value.owner is SSIMLoss and err.value.names == ("window_size",)
    with pytest.raises(SettingError, match=r"window_size=33 does not fit") as err:
        check_run(cfg, _module(scoring=Scoring(window_size=33)), _data(16))
    assert err.value.owner is Scoring


def test_a_model_that_fails_on_a_dry_batch_is_refused_before_training():
    module = _module()

    def two_channels(x):
        recon, z = ConvAutoencoder.forward_with_latent(module.net, x)
        return recon[:, :2], z

    module.net.forward_with_latent = two_channels
    with pytest.raises(AeLabError, match=r"fail on a 16x16 image before training") as err:
        dry_run(module, 16)
    assert isinstance(err.value.__cause__, RuntimeError | ValueError)
    assert module.training  # the mode is restored


def test_a_category_without_test_images_stops_before_training(tmp_path):
    root = write_tiny_mvtec(tmp_path / "mvtec", n_train=4, n_test_good=1, n_per_defect=1)
    shutil.rmtree(root / "widget/test")
    cfg = compose_config(tiny_overrides(root, tmp_path / "run", ["widget"]))
    with pytest.warns(NoTestImagesWarning), pytest.raises(AeLabError, match="Nothing to test"):
        train(cfg)
    assert not (tmp_path / "run" / "checkpoints").exists()
    check_run(OmegaConf.merge(cfg, {"test": False}), build_module(cfg), _data(32))


# ---- the checkpoint given as ckpt_path ---------------------------------------------------------
def _checkpoint(path: Path, cfg: DictConfig, epoch: int = 0, **extra) -> Path:
    """What check_checkpoint reads of a Lightning checkpoint written by train.py."""
    config = OmegaConf.to_container(cfg, resolve=True)
    state = {"state_dict": build_module(cfg).state_dict(), "epoch": epoch}
    torch.save(state | {"hyper_parameters": {"config": config}} | extra, path)
    return path


def _with(cfg: DictConfig, *overrides: str) -> DictConfig:
    return OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(overrides)))


@pytest.fixture
def ae(tmp_path) -> tuple[DictConfig, Path]:
    cfg = compose_config(SMALL)
    return cfg, _checkpoint(tmp_path / "ae.ckpt", cfg)


def test_a_fitting_checkpoint_is_accepted(ae):
    cfg, path = ae
    check_checkpoint(_with(cfg, f"ckpt_path={path}", "trainer.max_epochs=3"), build_module(cfg))
    check_checkpoint(_with(cfg, f"ckpt_path={path}", "train=false"), build_module(cfg))


def test_a_checkpoint_of_another_model_says_how_it_was_trained(ae):
    _, path = ae
    unet = compose_config([*SMALL, "model=unet", f"ckpt_path={path}", "train=false"])
    with pytest.raises(AeLabError, match=r"trained with model=ae.*`model=ae model\.latent_dim=8"):
        check_checkpoint(unet, build_module(unet))
    wider = compose_config([*SMALL, "model.latent_dim=16", f"ckpt_path={path}", "train=false"])
    with pytest.raises(AeLabError, match=r"model\.latent_dim=8 data\.image_size=32`"):
        check_checkpoint(wider, build_module(wider))


def test_resuming_must_go_on_with_the_same_loss_and_classes(ae):
    cfg, path = ae
    resume = _with(cfg, f"ckpt_path={path}", "trainer.max_epochs=3")
    with pytest.raises(AeLabError, match=r"loss\.name=ssim, this run has loss\.name=l1"):
        check_checkpoint(_with(resume, "loss.name=l1"), build_module(cfg))
    with pytest.raises(AeLabError, match=r"Resume with data\.categories="):
        check_checkpoint(_with(resume, "data.categories=[other]"), build_module(cfg))
    # Evaluating it under another loss (e.g. to compare scorings) is fine.
    check_checkpoint(_with(resume, "loss.name=l1", "train=false"), build_module(cfg))


def test_a_finished_checkpoint_has_nothing_left_to_resume(tmp_path):
    cfg = compose_config(SMALL)
    path = _checkpoint(tmp_path / "done.ckpt", cfg, epoch=4)
    resume = _with(cfg, f"ckpt_path={path}", "trainer.max_epochs=5")
    with pytest.raises(AeLabError, match=r"already trained 5 epochs.*trainer\.max_epochs=15"):
        check_checkpoint(resume, build_module(cfg))
    check_checkpoint(_with(resume, "trainer.max_epochs=6"), build_module(cfg))


def test_non_finite_weights_are_not_evaluated(tmp_path):
    cfg = compose_config(SMALL)
    path = _checkpoint(tmp_path / "nan.ckpt", cfg)
    state = torch.load(path, weights_only=True)
    next(iter(state["state_dict"].values())).fill_(float("nan"))
    torch.save(state, path)
    with pytest.raises(AeLabError, match=r"NaN/inf weights.*optimizer\.lr"):
        check_checkpoint(_with(cfg, f"ckpt_path={path}", "train=false"), build_module(cfg))


def test_unreadable_files_are_one_paragraph(ae, tmp_path):
    cfg, path = ae
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(AeLabError, match=r"Cannot read the checkpoint.*truncated"):
        load_checkpoint(truncated)
    torch.save({"weights": torch.zeros(1)}, tmp_path / "plain.ckpt")
    not_lightning = _with(cfg, f"ckpt_path={tmp_path / 'plain.ckpt'}", "train=false")
    with pytest.raises(AeLabError, match=r"no `state_dict`"):
        check_checkpoint(not_lightning, build_module(cfg))


class _Payload:
    """Unpickling this would create `marker`: what a hostile checkpoint could do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_checkpoint_holding_code_is_refused_unexecuted(tmp_path):
    marker = tmp_path / "executed"
    torch.save({"state_dict": {}, "payload": _Payload(marker)}, tmp_path / "evil.ckpt")
    with pytest.raises(AeLabError, match=r"Python objects beyond tensors.*weights_only=False"):
        load_checkpoint(tmp_path / "evil.ckpt")
    assert not marker.exists()
