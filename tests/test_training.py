"""The training entrypoint: config composition, every model x loss, resume, failures."""

import itertools
import math
import subprocess
import sys
from pathlib import Path

import hydra
import pytest
import torch

from ae_lab.errors import AeLabError
from ae_lab.module import AutoencoderModule, NonFiniteLossError
from ae_lab.training import train
from tests.compose import CONF_DIR, compose_config, tiny_overrides

REPO = Path(__file__).resolve().parents[1]
CATEGORIES = ["widget", "screw"]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def test_every_config_option_composes_and_instantiates():
    groups = {g: options(g) for g in ("data", "model", "loss", "trainer", "logger", "scoring")}
    assert groups["model"] == ["ae", "unet", "vae"]
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
@pytest.mark.parametrize("model", ["ae", "unet", "vae"])
def test_short_training_for_every_loss(model, tiny_mvtec, tmp_path):
    for loss in ["l1", "l2", "ssim", "ssim_l1"]:
        out = tmp_path / loss
        cfg = compose_config(
            [f"model={model}", f"loss={loss}", *tiny_overrides(tiny_mvtec, out, CATEGORIES)]
        )
        result = train(cfg)
        for key in (
            "train/loss",
            "val/loss",
            "val/l1",
            "val/l2",
            "val/one_minus_ssim",
            "test/image_auroc",
        ):
            assert math.isfinite(result[key]), (model, loss, key)
        assert 0.0 <= result["test/image_auroc"] <= 1.0
        assert Path(result["last_checkpoint"]).is_file()
        assert result["best_checkpoint"] and Path(result["best_checkpoint"]).is_file()


@pytest.mark.slow
def test_resume_from_last_checkpoint(tiny_mvtec, tmp_path):
    base = tiny_overrides(tiny_mvtec, tmp_path / "run", CATEGORIES)
    first = train(compose_config(base))
    last = first["last_checkpoint"]
    assert torch.load(last, weights_only=False)["epoch"] == 0
    resumed = compose_config([*base, "trainer.max_epochs=3", f"ckpt_path={last}"])
    second = train(resumed)
    state = torch.load(second["last_checkpoint"], weights_only=False)
    assert state["epoch"] == 2
    assert (
        state["global_step"] == 6
    )  # 2 batches per epoch x 3 epochs: the first epoch was not redone


@pytest.mark.slow
def test_evaluate_saved_model_without_training(tiny_mvtec, tmp_path):
    base = tiny_overrides(tiny_mvtec, tmp_path / "run", CATEGORIES)
    trained = train(compose_config(base))
    evaluated = train(
        compose_config([*base, "train=false", f"ckpt_path={trained['last_checkpoint']}"])
    )
    assert "train/loss" not in evaluated
    assert math.isfinite(evaluated["test/image_auroc"])


@pytest.mark.slow
def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tiny_mvtec, tmp_path, monkeypatch):
    base = tiny_overrides(tiny_mvtec, tmp_path / "run", CATEGORIES)
    original = AutoencoderModule._loss

    def explode_in_second_epoch(self, x):
        loss, recon = original(self, x)
        return (loss * float("nan") if self.current_epoch >= 1 else loss), recon

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


def test_train_false_needs_a_checkpoint(tmp_path):
    with pytest.raises(AeLabError, match="ckpt_path"):
        train(compose_config(["train=false", "logger=none"]))
    with pytest.raises(AeLabError, match="Checkpoint not found"):
        train(compose_config(["train=false", f"ckpt_path={tmp_path / 'nope.ckpt'}", "logger=none"]))


def run_train_py(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "train.py"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_missing_dataset_root_is_one_clear_paragraph(tmp_path):
    proc = run_train_py(
        "data=mvtec", f"data.root={tmp_path / 'missing'}", "logger=none", f"output_dir={tmp_path}"
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert str(tmp_path / "missing") in proc.stderr and "data=synthetic" in proc.stderr


def test_help_explains_groups():
    proc = run_train_py("--help")
    assert proc.returncode == 0
    for word in ("model", "loss", "data", "trainer", "logger", "unet", "ssim_l1"):
        assert word in proc.stdout


def test_error_raised_inside_a_constructor_is_one_paragraph_too(tmp_path):
    # Hydra wraps exceptions from `_target_` constructors; the entrypoint unwraps ours.
    proc = run_train_py("data.image_size=100", "logger=none", f"output_dir={tmp_path}")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "HYDRA_FULL_ERROR" not in proc.stderr
    assert "data.image_size=100" in proc.stderr and "model.net.depth" in proc.stderr
