"""ae_lab.scoring: anomaly maps and image scores, the illumination correction, the Scoring
arguments and conf/scoring/."""

import hydra
import kornia
import pytest
import torch
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from ae_lab.errors import SettingError
from ae_lab.losses import ERROR_KINDS
from ae_lab.scoring import Scoring, anomaly_map, image_score, match_illumination
from tests.compose import CONF_DIR, compose_config


def _textures(n: int = 4, size: int = 64, seed: int = 0) -> torch.Tensor:
    """Smooth random colour textures in [0.1, 0.75], so x*1.2 and x+0.1 stay (almost) unclipped."""
    g = torch.Generator().manual_seed(seed)
    noise = kornia.filters.gaussian_blur2d(
        torch.rand(n, 3, size, size, generator=g), (9, 9), (2.0, 2.0)
    )
    noise = (noise - noise.amin()) / (noise.amax() - noise.amin())
    return 0.1 + 0.65 * noise


@pytest.mark.parametrize(
    "bad",
    [
        {"map": "ssim2"},
        {"reduction": "median"},
        {"window_size": 10},
        {"window_size": 1},
        {"sigma": -1.0},
        {"topk_percent": 0},
        {"topk_percent": 101},
        {"illumination_invariant": "yes"},
    ],
)
def test_bad_arguments_are_refused_by_name(bad):
    ((name, value),) = bad.items()
    with pytest.raises(SettingError, match=name) as err:
        Scoring(**bad)
    assert err.value.owner is Scoring and err.value.names == (name,)
    if name != "illumination_invariant":
        assert f"{name}={value!r}" in str(err.value)


def test_a_mistyped_key_is_reported_by_hydra():
    with pytest.raises(ConfigCompositionException, match=r"scoring\.treshold"):
        compose_config(["scoring.treshold=0.5"])


def test_default_yaml_is_the_default_scoring():
    assert hydra.utils.instantiate(OmegaConf.load(CONF_DIR / "scoring/default.yaml")) == Scoring()
    assert hydra.utils.instantiate(compose_config().scoring) == Scoring()


@pytest.mark.parametrize("kind", ERROR_KINDS)
@pytest.mark.parametrize("invariant", [True, False])
def test_map_shape_and_zero_for_identical_images(kind, invariant):
    x = _textures(3, 32)
    cfg = Scoring(map=kind, illumination_invariant=invariant)
    amap = anomaly_map(x, x.clone(), cfg)
    assert amap.shape == (3, 1, 32, 32)
    assert amap.abs().max() < 1e-4
    other = anomaly_map(x, x.roll(1, dims=0), cfg)
    assert other.min() >= -1e-6 and other.mean() > 1e-3


def test_unsmoothed_l2_map_is_the_channel_mean_squared_error():
    x, recon = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    cfg = Scoring(map="l2", sigma=0, illumination_invariant=False)
    expected = (x - recon).square().mean(dim=1, keepdim=True)
    torch.testing.assert_close(anomaly_map(x, recon, cfg), expected)
    smoothed = anomaly_map(x, recon, Scoring(map="l2", sigma=4.0, illumination_invariant=False))
    assert smoothed.std() < expected.std()  # the blur actually ran


def test_match_illumination_undoes_a_global_affine_change():
    x = _textures(2, 32)
    torch.testing.assert_close(match_illumination(x * 1.2 + 0.05, x), x, atol=1e-4, rtol=0)


@pytest.mark.parametrize("kind", ERROR_KINDS)
@pytest.mark.parametrize("brighten", ["times1.2", "plus0.1"])
def test_global_brightening_scores_far_below_a_local_defect_of_equal_energy(kind, brighten):
    orig = _textures(4, 64)
    bright = (orig * 1.2 if brighten == "times1.2" else orig + 0.1).clamp(0, 1)
    energy = (bright - orig).square().sum(dim=(1, 2, 3))  # [B]
    defect = orig.clone()
    for i, e in enumerate(energy.tolist()):
        side = round((e / (3 * 0.25**2)) ** 0.5)  # +0.25 on a side x side patch, 3 channels
        defect[i, :, 10 : 10 + side, 20 : 20 + side] += 0.25
    assert torch.allclose((defect - orig).square().sum(dim=(1, 2, 3)), energy, rtol=0.15)

    cfg = Scoring(map=kind)
    score_bright = image_score(anomaly_map(bright, orig, cfg), cfg)
    score_defect = image_score(anomaly_map(defect, orig, cfg), cfg)
    assert (score_bright < 0.1 * score_defect).all(), (score_bright, score_defect)
    # Without the correction the same brightening is a large part of the defect's score.
    raw = Scoring(map=kind, illumination_invariant=False)
    assert (image_score(anomaly_map(bright, orig, raw), raw) > 5 * score_bright).all()


def test_image_score_reductions():
    amap = torch.zeros(2, 1, 10, 10)
    amap[0, 0, 0, :5] = 1.0  # 5 % of the pixels
    amap[1, 0, 0, 0] = 4.0
    mean, peak = Scoring(reduction="mean"), Scoring(reduction="max")
    assert torch.allclose(image_score(amap, mean), torch.tensor([0.05, 0.04]))
    assert torch.allclose(image_score(amap, peak), torch.tensor([1.0, 4.0]))
    topk = image_score(amap, Scoring(reduction="topk", topk_percent=10))  # 10 pixels
    assert torch.allclose(topk, torch.tensor([0.5, 0.4]))
    assert torch.allclose(
        image_score(amap, Scoring(reduction="topk", topk_percent=1)), torch.tensor([1.0, 4.0])
    )
