"""ae_lab.training: `train(cfg)` end to end on tiny data (every model x loss, resume, evaluate
only), and its parts: the module with the run's config, the callbacks by name, the logger, the
trainer, atomic checkpoints, compilation, and the guards against a result from random or
diverged weights."""

import errno
import math
import re
import sys
from pathlib import Path

import hydra
import lightning as L
import pytest
import torch
from hydra.errors import InstantiationException
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

from ae_lab.callbacks import WandbMediaCallback
from ae_lab.cli import describe
from ae_lab.errors import AeLabError
from ae_lab.models import VariationalAutoencoder
from ae_lab.module import AutoencoderModule, NonFiniteLossError, non_finite_tensors
from ae_lab.training import (
    best_checkpoint,
    build_callbacks,
    build_logger,
    build_module,
    build_trainer,
    compile_network,
    optimise,
    output_dir,
    train,
)
from tests.compose import compose_config, tiny_overrides

CATEGORIES = ["widget", "screw"]
SMALL = {"image_size": 32, "base_channels": 8, "depth": 3, "latent_dim": 8}


def tiny(root: Path, out: Path, *extra: str) -> DictConfig:
    return compose_config([*tiny_overrides(root, out, CATEGORIES), *extra])


def checkpoints_are_finite(folder: Path) -> list[Path]:
    files = sorted(folder.glob("*.ckpt"))
    for file in files:
        state = torch.load(file, map_location="cpu", weights_only=True)["state_dict"]
        assert not non_finite_tensors(state), file
    return files


def global_step(path: str | Path) -> int:
    return torch.load(path, map_location="cpu", weights_only=True)["global_step"]


# ---- train(cfg) ---------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize(
    ("model", "loss"), [("ae", "l1"), ("unet", "ssim"), ("vae", "ssim_l1"), ("ae", "l2")]
)
def test_short_training_of_every_model_and_loss(model, loss, tiny_mvtec, tmp_path):
    result = train(tiny(tiny_mvtec, tmp_path, f"model={model}", f"loss={loss}"))
    for key in ("train/loss", "val/loss", "val/l1", "val/l2", "val/one_minus_ssim"):
        assert math.isfinite(result[key]), (model, loss, key)
    assert 0.0 <= result["test/image_auroc"] <= 1.0
    assert Path(result["last_checkpoint"]).is_file()
    assert result["best_checkpoint"] and Path(result["best_checkpoint"]).is_file()
    assert result["output_dir"] == str(tmp_path)


@pytest.mark.slow
def test_resume_from_last_checkpoint_then_evaluate_it(tiny_mvtec, tmp_path):
    base = tiny_overrides(tiny_mvtec, tmp_path / "run", CATEGORIES)
    last = train(compose_config([*base, "test=false"]))["last_checkpoint"]
    assert torch.load(last, weights_only=True)["epoch"] == 0
    resumed = compose_config([*base, "trainer.max_epochs=3", f"ckpt_path={last}", "test=false"])
    state = torch.load(train(resumed)["last_checkpoint"], weights_only=True)
    # 2 batches per epoch x 3 epochs: the first epoch was not redone.
    assert state["global_step"] == 6 and state["epoch"] == 2
    evaluated = train(compose_config([*base, "train=false", f"ckpt_path={last}"]))
    assert "train/loss" not in evaluated
    assert math.isfinite(evaluated["test/image_auroc"])


@pytest.mark.slow
def test_last_checkpoint_is_the_final_step_when_val_loss_stops_improving(tiny_mvtec, tmp_path):
    # mode=max + L2 (its val/loss falls every epoch here): the "best" stays at epoch 0 while
    # training goes on, as when val/loss plateaus; last.ckpt must still be the final step, or
    # resuming would lose the later epochs.
    overrides = [
        "test=false",
        "trainer.max_epochs=3",
        "loss=l2",
        "callbacks.model_checkpoint.mode=max",
    ]
    result = train(tiny(tiny_mvtec, tmp_path, *overrides))
    assert global_step(result["best_checkpoint"]) == 2
    assert global_step(result["last_checkpoint"]) == 6


@pytest.mark.slow
def test_the_best_checkpoint_is_found_by_name_whatever_the_callback_order(
    tiny_mvtec, tmp_path, monkeypatch
):
    """With `last_checkpoint` listed first, the best model (`model_checkpoint`) is still the one
    reported and tested, not the first ModelCheckpoint (which would be last.ckpt)."""
    cfg = tiny(tiny_mvtec, tmp_path)
    callbacks = OmegaConf.to_container(cfg.callbacks, resolve=False)
    order = ["last_checkpoint", *[name for name in callbacks if name != "last_checkpoint"]]
    cfg.callbacks = {name: callbacks[name] for name in order}
    assert list(cfg.callbacks)[:2] == ["last_checkpoint", "model_checkpoint"]
    tested = []
    original = L.Trainer.test

    def record(self, *args, **kwargs):
        tested.append(kwargs["ckpt_path"])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(L.Trainer, "test", record)
    result = train(cfg)
    best = Path(result["best_checkpoint"])
    assert best.parent == tmp_path / "checkpoints" and best.name.startswith("epoch000-val_loss")
    assert result["last_checkpoint"] == str(tmp_path / "checkpoints" / "last.ckpt")
    assert tested == [str(best)]


@pytest.mark.slow
def test_last_checkpoint_rebuilds_the_trained_module(tiny_mvtec, tmp_path):
    """`AutoencoderModule.load_from_checkpoint(last.ckpt, weights_only=True)` needs nothing but
    the file and predicts what the trained module predicts; the run's config comes along."""
    cfg = tiny(tiny_mvtec, tmp_path, "model=vae", "loss=ssim_l1", "scoring.map=ssim")
    datamodule = hydra.utils.instantiate(cfg.data)
    module = build_module(cfg)
    callbacks = build_callbacks(cfg.callbacks, tmp_path / "checkpoints")
    trainer = build_trainer(cfg.trainer, None, list(callbacks.values()), tmp_path)
    trainer.fit(module, datamodule=datamodule)
    loaded = AutoencoderModule.load_from_checkpoint(
        tmp_path / "checkpoints" / "last.ckpt", weights_only=True
    )
    assert type(loaded.net) is VariationalAutoencoder and loaded.kl_beta == module.kl_beta
    assert loaded.scoring == module.scoring and type(loaded.loss_fn) is type(module.loss_fn)
    saved = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["hyper_parameters"]["config"]["data"]["categories"] == CATEGORIES
    batch = next(iter(datamodule.test_dataloader()))
    trained, rebuilt = module.eval().predict(batch), loaded.eval().predict(batch)
    assert torch.equal(trained.recon, rebuilt.recon)
    assert trained.scores.equals(rebuilt.scores)
    assert not torch.equal(trained.recon, build_module(cfg).eval().predict(batch).recon)


# ---- the parts --------------------------------------------------------------------------------
def test_build_module_keeps_the_whole_run_config():
    cfg = compose_config(["data.image_size=32", "model.net.depth=3", "logger=none"])
    module = build_module(cfg)
    assert module.hparams["config"] == OmegaConf.to_container(cfg, resolve=True)


def test_output_dir_is_the_setting_else_outputs_run_name(tmp_path):
    assert output_dir(compose_config([f"output_dir={tmp_path}"])) == tmp_path
    assert output_dir(compose_config(["model=unet"])) == Path("outputs/unet-ssim-z128")


def test_every_configured_callback_is_built_by_name_users_included(tmp_path):
    early_stop = "+callbacks.early_stop={_target_:lightning.pytorch.callbacks.EarlyStopping,monitor:val/loss}"
    cfg = compose_config(["logger=none", early_stop])
    callbacks = build_callbacks(cfg.callbacks, tmp_path)
    assert list(callbacks) == ["model_checkpoint", "last_checkpoint", "wandb_media", "early_stop"]
    assert isinstance(callbacks["early_stop"], EarlyStopping)
    assert callbacks["early_stop"].monitor == "val/loss"
    assert isinstance(callbacks["wandb_media"], WandbMediaCallback)
    checkpoints = [c for c in callbacks.values() if isinstance(c, ModelCheckpoint)]
    assert len(checkpoints) == 2 and {c.dirpath for c in checkpoints} == {str(tmp_path)}
    trainer = build_trainer(cfg.trainer, None, list(callbacks.values()), tmp_path)
    assert any(isinstance(c, EarlyStopping) for c in trainer.callbacks)
    # With a logger, the learning-rate monitor (which needs one) is built too.
    with_logger = build_callbacks(compose_config([early_stop]).callbacks, tmp_path)
    assert isinstance(with_logger["lr_monitor"], LearningRateMonitor)
    assert "early_stop" in with_logger


def test_a_checkpoint_with_its_own_folder_keeps_it(tmp_path):
    cfg = compose_config(
        ["logger=none", f"+callbacks.model_checkpoint.dirpath={tmp_path / 'mine'}"]
    )
    callbacks = build_callbacks(cfg.callbacks, tmp_path / "run")
    assert callbacks["model_checkpoint"].dirpath == str(tmp_path / "mine")
    assert callbacks["last_checkpoint"].dirpath == str(tmp_path / "run")


def test_best_checkpoint_is_none_before_anything_was_saved(tmp_path):
    callbacks = build_callbacks(compose_config(["logger=none"]).callbacks, tmp_path)
    assert best_checkpoint(callbacks) is None
    callbacks["last_checkpoint"].best_model_path = str(tmp_path / "last.ckpt")
    assert best_checkpoint(callbacks) is None  # only `model_checkpoint` holds the best
    callbacks["model_checkpoint"].best_model_path = str(tmp_path / "epoch000.ckpt")
    assert best_checkpoint(callbacks) == str(tmp_path / "epoch000.ckpt")


def test_no_logger_for_logger_none_and_the_fix_without_wandb(monkeypatch):
    assert build_logger(compose_config(["logger=none"]).get("logger")) is None
    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` raises ImportError
    with pytest.raises(AeLabError, match=r"needs the `wandb` package.*logger=none"):
        build_logger(compose_config(["logger=wandb"]).logger)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_gpu_trainer_without_gpu_suggests_the_default_trainer(tmp_path):
    cfg = compose_config(["trainer=gpu", "logger=none"])
    with pytest.raises(InstantiationException) as err:  # the command line names the fix
        build_trainer(cfg.trainer, None, [], tmp_path)
    assert re.search(r"trainer=gpu.*GPU.*trainer=default", describe(err.value, cfg))
    cfg = compose_config(["+trainer.foo=1", "logger=none"])
    with pytest.raises(InstantiationException) as err:
        build_trainer(cfg.trainer, None, [], tmp_path)
    assert "rejects a setting (trainer.foo=1): Trainer.__init__() got an unexpected" in describe(
        err.value, cfg
    )


def test_compile_keeps_state_dict_keys_and_compiles_every_path():
    cfg = compose_config(["model=vae", "data.image_size=32", "torch.compile=true"])
    compiled, plain = build_module(cfg), build_module(cfg)
    optimise(compiled, cfg.torch)
    assert not any("_orig_mod" in k for k in compiled.state_dict())
    assert compiled.state_dict().keys() == plain.state_dict().keys()
    # A checkpoint of the compiled run loads, strictly, into a module built with compile off.
    plain.load_state_dict(compiled.state_dict(), strict=True)
    for name in ("forward", "forward_with_kl", "forward_with_latent", "encode"):
        assert hasattr(getattr(compiled.net, name), "_torchdynamo_orig_callable"), name
        assert not hasattr(getattr(plain.net, name), "_torchdynamo_orig_callable"), name


def test_compiled_vae_trains_and_encodes_through_the_compiled_code():
    torch.manual_seed(0)
    net = compile_network(VariationalAutoencoder(**SMALL), backend="eager")
    x = torch.rand(2, 3, 32, 32)
    recon, kl = net.forward_with_kl(x)
    (recon.mean() + kl).backward()
    assert net.encode(x).shape == (2, 8) and net(x).shape == x.shape
    assert all(p.grad is not None for p in net.encoder.parameters())


def test_channels_last_weights_when_asked():
    cfg = compose_config(["data.image_size=32", "model.net.depth=3", "torch.channels_last=true"])
    module = build_module(cfg)
    optimise(module, cfg.torch)
    conv = module.net.encoder[0][0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()


# ---- guards: no result from random or diverged weights, no half-written checkpoint -----------
def test_a_run_without_a_training_step_reports_no_result(tiny_mvtec, tmp_path):
    with pytest.raises(AeLabError, match=r"trainer\.limit_train_batches=0.*random weights"):
        train(tiny(tiny_mvtec, tmp_path, "trainer.limit_train_batches=0"))
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.slow
def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tiny_mvtec, tmp_path, monkeypatch):
    original = AutoencoderModule._loss

    def explode_in_second_epoch(self, x):
        loss, recon, z = original(self, x)
        return (loss * float("nan") if self.current_epoch >= 1 else loss), recon, z

    monkeypatch.setattr(AutoencoderModule, "_loss", explode_in_second_epoch)
    with pytest.raises(NonFiniteLossError, match=r"training loss became nan") as caught:
        train(tiny(tiny_mvtec, tmp_path, "trainer.max_epochs=3"))
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert caught.value.last_checkpoint == str(last)
    assert f"{last} is the last one and its weights are finite" in str(caught.value)
    assert torch.load(last, weights_only=True)["epoch"] == 0
    checkpoints_are_finite(tmp_path / "checkpoints")


@pytest.mark.slow
def test_weights_that_blow_up_behind_a_finite_loss_are_caught(tiny_mvtec, tmp_path, monkeypatch):
    # BatchNorm can keep the loss finite while weights and statistics are NaN/inf.
    def poison(self):
        if self.current_epoch == 1:
            with torch.no_grad():
                next(b for n, b in self.named_buffers() if "running_var" in n).fill_(float("inf"))

    monkeypatch.setattr(AutoencoderModule, "on_train_epoch_start", poison, raising=False)
    with pytest.raises(NonFiniteLossError, match=r"running_var.*last\.ckpt is the last one"):
        train(tiny(tiny_mvtec, tmp_path, "trainer.max_epochs=3"))
    files = checkpoints_are_finite(tmp_path / "checkpoints")
    assert [torch.load(f, weights_only=True)["epoch"] for f in files] == [0, 0]  # best + last


@pytest.mark.slow
def test_full_disk_while_checkpointing_leaves_no_truncated_checkpoint(
    tiny_mvtec, tmp_path, monkeypatch
):
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
        assert global_step(file) == saves[0]  # complete, from epoch 0


@pytest.mark.slow
def test_a_run_on_a_fresh_synthetic_root_writes_the_set_first(tmp_path):
    """The default data: nothing on disk yet; the run generates it (prepare_data), then trains."""
    root = tmp_path / "synthetic"
    generate = ["data.generate.n_train=6", "data.generate.n_test=6", "data.generate.image_size=32"]
    overrides = tiny_overrides(root, tmp_path / "run", ["cable"])
    overrides = [o for o in overrides if o != "data.generate=null"]
    result = train(compose_config(["data=synthetic", *overrides, *generate]))
    assert (root / "cable" / "train" / "good").is_dir()
    assert 0.0 <= result["test/image_auroc"] <= 1.0
