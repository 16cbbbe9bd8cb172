"""The training entrypoint: config composition, every model x loss, resume, failures."""

import itertools
import math
import subprocess
import sys
from pathlib import Path

import hydra
import pytest
import torch
from omegaconf import OmegaConf

from ae_lab.errors import AeLabError
from ae_lab.module import AutoencoderModule, NonFiniteLossError
from ae_lab.training import check_output_root, run_cli, train
from tests.compose import CONF_DIR, compose_config, tiny_overrides

REPO = Path(__file__).resolve().parents[1]
CATEGORIES = ["widget", "screw"]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def test_every_config_option_composes_and_instantiates():
    groups = {g: options(g) for g in ("data", "model", "loss", "trainer", "logger", "scoring")}
    assert groups["model"] == ["ae", "unet", "unet_coarse", "vae"]
    assert groups["loss"] == ["l1", "l2", "ssim", "ssim_l1"]
    assert {"mvtec", "synthetic"} <= set(groups["data"])
    for group, names in groups.items():
        for name in names:
            cfg = compose_config([f"{group}={name}"])
            assert cfg.run_name == f"{cfg.model.name}-{cfg.loss.name}-z{cfg.model.latent_dim}"
    for model, loss in itertools.product(groups["model"], groups["loss"]):
        cfg = compose_config([f"model={model}", f"loss={loss}", "data.image_size=64"])
        net = hydra.utils.instantiate(cfg.model.net)
        assert net.encode(torch.rand(2, 3, 64, 64)).shape == (2, cfg.model.latent_dim)
        assert (
            hydra.utils.instantiate(cfg.loss.fn)(
                torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
            ).ndim
            == 0
        )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("model", "loss"), [("ae", "l1"), ("unet", "ssim"), ("vae", "ssim_l1"), ("ae", "l2")]
)
def test_short_training_of_every_model_and_loss(model, loss, tiny_mvtec, tmp_path):
    cfg = compose_config(
        [f"model={model}", f"loss={loss}", *tiny_overrides(tiny_mvtec, tmp_path, CATEGORIES)]
    )
    result = train(cfg)
    for key in ("train/loss", "val/loss", "val/l1", "val/l2", "val/one_minus_ssim"):
        assert math.isfinite(result[key]), (model, loss, key)
    assert 0.0 <= result["test/image_auroc"] <= 1.0
    assert Path(result["last_checkpoint"]).is_file()
    assert result["best_checkpoint"] and Path(result["best_checkpoint"]).is_file()


@pytest.mark.slow
def test_resume_from_last_checkpoint_then_evaluate_it(tiny_mvtec, tmp_path):
    base = tiny_overrides(tiny_mvtec, tmp_path / "run", CATEGORIES)
    last = train(compose_config([*base, "test=false"]))["last_checkpoint"]
    assert torch.load(last, weights_only=False)["epoch"] == 0
    with pytest.raises(AeLabError, match=r"already trained 1 epochs.*trainer\.max_epochs=1"):
        train(compose_config([*base, f"ckpt_path={last}"]))
    with pytest.raises(
        AeLabError, match=r"trained with loss\.name=ssim, this run has loss\.name=l1"
    ):
        train(compose_config([*base, "loss=l1", "trainer.max_epochs=3", f"ckpt_path={last}"]))
    resumed = compose_config([*base, "trainer.max_epochs=3", f"ckpt_path={last}", "test=false"])
    state = torch.load(train(resumed)["last_checkpoint"], weights_only=False)
    # 2 batches per epoch x 3 epochs: the first epoch was not redone.
    assert state["global_step"] == 6 and state["epoch"] == 2
    evaluated = train(compose_config([*base, "train=false", f"ckpt_path={last}"]))
    assert "train/loss" not in evaluated
    assert math.isfinite(evaluated["test/image_auroc"])


@pytest.mark.slow
def test_last_checkpoint_is_the_final_step_when_val_loss_stops_improving(tiny_mvtec, tmp_path):
    # mode=max + L2 (its val/loss falls every epoch here): the "best" stays at epoch 0 while
    # training goes on, as when val/loss plateaus. Lightning 2.6's save_last then left last.ckpt at
    # epoch 0, and resuming lost the later epochs.
    base = tiny_overrides(tiny_mvtec, tmp_path / "run", CATEGORIES)
    overrides = [
        "test=false",
        "trainer.max_epochs=3",
        "loss=l2",
        "callbacks.model_checkpoint.mode=max",
    ]
    result = train(compose_config([*base, *overrides]))
    assert torch.load(result["best_checkpoint"], weights_only=False)["global_step"] == 2
    assert torch.load(result["last_checkpoint"], weights_only=False)["global_step"] == 6


@pytest.mark.slow
def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tiny_mvtec, tmp_path, monkeypatch):
    base = tiny_overrides(tiny_mvtec, tmp_path / "run", CATEGORIES)
    original = AutoencoderModule._loss

    def explode_in_second_epoch(self, x):
        loss, recon, z = original(self, x)
        return (loss * float("nan") if self.current_epoch >= 1 else loss), recon, z

    monkeypatch.setattr(AutoencoderModule, "_loss", explode_in_second_epoch)
    with pytest.raises(
        NonFiniteLossError, match=r"last\.ckpt is the last one and its weights are finite"
    ):
        train(compose_config([*base, "trainer.max_epochs=3"]))
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False)
    assert state["epoch"] == 0
    assert all(
        torch.isfinite(t).all() for t in state["state_dict"].values() if t.is_floating_point()
    )


def test_settings_that_would_waste_the_run_are_refused_first(tmp_path):
    with pytest.raises(AeLabError, match="ckpt_path"):
        train(compose_config(["train=false", "logger=none"]))
    with pytest.raises(AeLabError, match="Checkpoint not found"):
        train(compose_config(["train=false", f"ckpt_path={tmp_path / 'nope.ckpt'}", "logger=none"]))
    (tmp_path / "last.ckpt").touch()
    with pytest.raises(AeLabError, match=r"is a folder.*last\.ckpt"):
        train(compose_config([f"ckpt_path={tmp_path}", "logger=none"]))
    for limit in ("0.5", "0", "3"):  # issue 20, item 1: part of the test set is no result
        with pytest.raises(AeLabError, match=rf"limit_test_batches={limit} .*test=false"):
            train(compose_config([f"trainer.limit_test_batches={limit}", "logger=none"]))


def test_run_folder_stays_inside_the_output_root(tmp_path, capsys, monkeypatch):
    """Issue 20: odd run names and output roots give one clear message, never a traceback."""
    name = OmegaConf.create(
        {"a": "${ae_lab.name:../../x}", "b": "${ae_lab.name:" + "n" * 300 + "}"}
    )
    assert name.a == "x" and len(name.b) == 80
    (tmp_path / "afile").touch()
    monkeypatch.setenv("AE_LAB_OUTPUTS", str(tmp_path / "afile" / "runs"))
    with pytest.raises(SystemExit) as caught:
        check_output_root([])
    assert caught.value.code == 2 and "afile is not a folder" in capsys.readouterr().err
    monkeypatch.delenv("AE_LAB_OUTPUTS")
    check_output_root([f"hydra.run.dir={tmp_path / 'new' / 'run'}"])  # a folder to be made: fine


def test_wandb_logger_without_wandb_names_the_fix(tiny_mvtec, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` raises ImportError
    base = tiny_overrides(tiny_mvtec, tmp_path, CATEGORIES)
    with pytest.raises(AeLabError, match=r"needs the `wandb` package.*logger=none"):
        train(compose_config([*base, "logger=wandb"]))


def run_train_py(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "train.py"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def run_cli_error(capsys, *overrides: str) -> str:
    """What `train.py` prints for a user error (in-process: the same `run_cli` wraps `train`)."""
    with pytest.raises(SystemExit) as caught:
        run_cli(train, compose_config([*overrides, "logger=none"]))
    assert caught.value.code == 2
    return capsys.readouterr().err


def test_missing_dataset_root_is_one_clear_paragraph(tmp_path, capsys):
    err = run_cli_error(
        capsys, "data=mvtec", f"data.root={tmp_path / 'missing'}", f"output_dir={tmp_path}"
    )
    assert str(tmp_path / "missing") in err and "data=synthetic" in err


def test_error_raised_inside_a_constructor_is_one_paragraph_too(tmp_path, capsys):
    # Hydra wraps exceptions from `_target_` constructors; the entrypoint unwraps ours.
    err = run_cli_error(capsys, "data.image_size=100", f"output_dir={tmp_path}")
    assert "HYDRA_FULL_ERROR" not in err
    assert "data.image_size=100" in err and "model.net.depth" in err


def test_help_explains_groups():
    proc = run_train_py("--help")
    assert proc.returncode == 0
    for word in ("model", "loss", "data", "trainer", "logger", "unet", "ssim_l1"):
        assert word in proc.stdout
