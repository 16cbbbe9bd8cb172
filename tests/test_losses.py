"""ae_lab.losses: the reconstruction losses against hand-computed values, their argument checks,
and the raw per-image errors that validation and the score table report."""

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from ae_lab.errors import SettingError
from ae_lab.losses import (
    ERROR_KINDS,
    L1Loss,
    L2Loss,
    SSIML1Loss,
    SSIMLoss,
    error_kind,
    per_image_errors,
)

CONF = Path(__file__).resolve().parents[1] / "conf"


@pytest.fixture
def pair() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(2, 3, 24, 24, generator=g), torch.rand(2, 3, 24, 24, generator=g)


def test_l1_and_l2_on_a_known_pair():
    recon = torch.zeros(1, 1, 2, 2)
    target = torch.tensor([[[[0.1, 0.2], [0.3, 0.4]]]])
    assert L1Loss()(recon, target).item() == pytest.approx(0.25)
    assert L2Loss()(recon, target).item() == pytest.approx((0.01 + 0.04 + 0.09 + 0.16) / 4)


def test_ssim_loss_of_identical_images_is_zero(pair):
    x, _ = pair
    assert SSIMLoss()(x, x.clone()).item() == pytest.approx(0.0, abs=1e-5)
    black = torch.zeros(1, 3, 16, 16)
    assert SSIMLoss()(black, black).item() == pytest.approx(0.0, abs=1e-4)


def test_ssim_loss_of_flat_images_is_the_luminance_term():
    # Flat images have zero variance, so SSIM reduces to (2ab + c1) / (a^2 + b^2 + c1).
    a, b, c1 = 0.2, 0.6, 0.01**2
    expected = 1 - (2 * a * b + c1) / (a * a + b * b + c1)
    loss = SSIMLoss(window_size=7)(torch.full((1, 3, 16, 16), a), torch.full((1, 3, 16, 16), b))
    # float32 roundoff in the local variances (E[x^2] - mu^2) shifts the map by ~1e-4.
    assert loss.item() == pytest.approx(expected, abs=3e-4)


def test_ssim_loss_scale_and_gradient(pair):
    recon, target = pair
    recon.requires_grad_(True)
    loss = SSIMLoss()(recon, target)
    assert 0.5 < loss.item() <= 2.0  # independent noise: SSIM near 0, loss near 1
    loss.backward()
    assert recon.grad is not None and recon.grad.abs().sum() > 0
    # The loss must fall as the reconstruction approaches the target.
    assert SSIMLoss()(0.5 * (recon + target), target) < loss


def test_ssim_l1_is_the_weighted_sum(pair):
    recon, target = pair
    expected = 0.84 * SSIMLoss(7)(recon, target) + 0.16 * L1Loss()(recon, target)
    torch.testing.assert_close(SSIML1Loss(window_size=7, alpha=0.84)(recon, target), expected)
    torch.testing.assert_close(SSIML1Loss(alpha=0.0)(recon, target), L1Loss()(recon, target))


@pytest.mark.parametrize("window_size", [0, 1, -3, 4, 11.0, True, "11"])
def test_window_size_must_be_an_odd_integer_of_at_least_3(window_size):
    for cls in (SSIMLoss, SSIML1Loss):
        with pytest.raises(SettingError, match=rf"window_size={window_size!r}") as err:
            cls(window_size)
        assert err.value.owner is cls and err.value.names == ("window_size",)
    assert SSIMLoss(3).window_size == 3


@pytest.mark.parametrize("alpha", [1.5, -0.1, float("nan"), "half"])
def test_alpha_must_be_a_fraction(alpha):
    with pytest.raises(SettingError, match="alpha") as err:
        SSIML1Loss(alpha=alpha)
    assert err.value.names == ("alpha",)


@pytest.mark.parametrize("loss", [L1Loss(), L2Loss(), SSIMLoss()])
def test_shape_mismatch_is_an_error(loss):
    with pytest.raises(ValueError, match="differ"):
        loss(torch.rand(1, 3, 16, 16), torch.rand(1, 1, 16, 16))


@pytest.mark.parametrize(
    ("name", "cls"),
    [("l1", L1Loss), ("l2", L2Loss), ("ssim", SSIMLoss), ("ssim_l1", SSIML1Loss)],
)
def test_loss_yaml_instantiates(name, cls, pair):
    cfg = OmegaConf.load(CONF / "loss" / f"{name}.yaml")
    assert cfg.name == name
    fn = instantiate(cfg.fn)
    assert type(fn) is cls
    value = fn(*pair)
    assert value.ndim == 0 and value.item() > 0


def test_error_kinds_are_the_plain_losses():
    recon, target = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    assert ERROR_KINDS == ("l1", "l2", "ssim")
    for name, cls in zip(ERROR_KINDS, (L1Loss, L2Loss, SSIMLoss), strict=True):
        torch.testing.assert_close(error_kind(name)(recon, target), cls()(recon, target))
    assert error_kind("ssim", window_size=7).window_size == 7


def test_per_image_errors_are_raw():
    x = torch.full((2, 3, 16, 16), 0.5)
    recon = x.clone()
    recon[1] = 0.3
    errors = per_image_errors(x, recon)
    assert set(errors) == set(ERROR_KINDS)
    assert torch.allclose(errors["l1"], torch.tensor([0.0, 0.2]))
    assert torch.allclose(errors["l2"], torch.tensor([0.0, 0.04]))
    # A flat offset is an SSIM luminance change only: > 0 although the structure is equal.
    assert errors["ssim"][0].abs() < 1e-4 and errors["ssim"][1] > 0.05
    assert all(v.shape == (2,) and not v.requires_grad for v in errors.values())
