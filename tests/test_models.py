"""ae_lab.models: the three autoencoders (shapes, ranges, latent paths, skips, KL), their
argument checks, and their `net` entries in conf/model/."""

import pytest
import torch
from hydra.utils import instantiate

from ae_lab.errors import SettingError
from ae_lab.models import ConvAutoencoder, UNetAutoencoder, VariationalAutoencoder
from tests.compose import compose_config

SMALL = {"image_size": 32, "base_channels": 8, "depth": 3, "latent_dim": 16}
CLASSES = [ConvAutoencoder, UNetAutoencoder, VariationalAutoencoder]


@pytest.fixture
def x() -> torch.Tensor:
    return torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("cls", CLASSES)
def test_shapes_range_and_latent_paths_agree(cls, x):
    torch.manual_seed(0)
    model = cls(**SMALL).eval()
    with torch.no_grad():
        recon, z = model.forward_with_latent(x)  # the encoder runs once
        assert recon.shape == x.shape and z.shape == (4, 16)
        assert recon.min() >= 0 and recon.max() <= 1
        torch.testing.assert_close(recon, model(x))
        torch.testing.assert_close(z, model.encode(x))
        # decode(z) needs the encoder features only for the U-Net's skips
        torch.testing.assert_close(recon, model.decode(z, model.features(x)))
        if cls is not UNetAutoencoder:
            torch.testing.assert_close(recon, model.decode(z))


@pytest.mark.parametrize("cls", CLASSES)
def test_gradients_reach_every_parameter(cls, x):
    torch.manual_seed(0)
    model = cls(**SMALL).train()
    loss = (model(x) - x).pow(2).mean()
    if isinstance(model, VariationalAutoencoder):
        loss = loss + model.forward_with_kl(x)[1]
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_unet_without_skips_is_the_plain_autoencoder(x):
    torch.manual_seed(0)
    plain = ConvAutoencoder(**SMALL).eval()
    unet = UNetAutoencoder(**SMALL, skip_levels=[]).eval()
    assert len(unet.skip_fuse) == 0
    unet.load_state_dict(plain.state_dict())  # strict: identical parameter sets
    with torch.no_grad():
        torch.testing.assert_close(unet(x), plain(x))


def test_unet_skip_levels_build_one_fusion_per_level(x):
    assert sorted(UNetAutoencoder(**SMALL).skip_fuse) == ["0", "1", "2"]
    unet = UNetAutoencoder(**SMALL, skip_levels=[2, 1, 2])
    assert unet.skip_levels == (1, 2)
    assert sorted(unet.skip_fuse) == ["1", "2"]
    assert unet(x).shape == x.shape
    assert UNetAutoencoder(**SMALL, skip_levels=[-1]).skip_levels == (2,)  # the deepest


@pytest.mark.parametrize("levels", [[3], [-4], [0, "1"], [True]])
def test_unet_rejects_invalid_skip_levels(levels):
    with pytest.raises(SettingError, match=r"skip_levels.*0\.\.2") as err:
        UNetAutoencoder(**SMALL, skip_levels=levels)
    assert err.value.owner is UNetAutoencoder and err.value.names == ("skip_levels",)


def test_vae_kl_and_sampling(x):
    torch.manual_seed(0)
    model = VariationalAutoencoder(**SMALL)
    model.train()
    (r1, kl), r2 = model.forward_with_kl(x), model(x)
    assert kl.ndim == 0 and kl >= 0
    assert not torch.allclose(r1, r2)  # training mode samples z
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x))
        torch.testing.assert_close(model.encode(x), model.posterior(x)[0])


def test_vae_kl_matches_closed_form(x, monkeypatch):
    model = VariationalAutoencoder(**SMALL).eval()
    mu, logvar = torch.ones(4, 16), torch.zeros(4, 16)
    monkeypatch.setattr(model, "posterior", lambda _: (mu, logvar))
    # KL(N(1, 1) || N(0, 1)) = 0.5 per dimension, summed over 16 dims.
    assert model.forward_with_kl(x)[1].item() == pytest.approx(8.0)
    monkeypatch.setattr(model, "posterior", lambda _: (0 * mu, logvar))
    assert model.forward_with_kl(x)[1].item() == pytest.approx(0.0)


@pytest.mark.parametrize("cls", CLASSES)
def test_image_size_not_divisible_by_depth_names_both_arguments_and_the_sizes_that_fit(cls):
    with pytest.raises(SettingError) as err:
        cls(image_size=100, depth=4)
    assert err.value.names == ("image_size", "depth") and err.value.owner is cls
    msg = str(err.value)
    for part in ("image_size=100", "2**4", "96", "112", "depth=2"):
        assert part in msg
    assert "data." not in msg and "model." not in msg  # arguments, not config keys


@pytest.mark.parametrize(
    "bad", [{"latent_dim": 0}, {"depth": 0}, {"base_channels": -8}, {"max_channels": 2.5}]
)
def test_non_positive_or_fractional_sizes_are_rejected_by_name(bad):
    ((name, value),) = bad.items()
    with pytest.raises(SettingError, match=rf"{name}={value} must be an integer") as err:
        ConvAutoencoder(**{**SMALL, **bad})
    assert err.value.names == (name,)


@pytest.mark.parametrize("cls", CLASSES)
def test_default_size_parameter_count(cls):
    n = sum(p.numel() for p in cls().parameters())
    assert 300_000 < n < 2_000_000


def test_channels_last_input_gives_the_same_output(x):
    torch.manual_seed(0)
    model = UNetAutoencoder(**SMALL).eval()
    with torch.no_grad():
        expected = model(x)
        model = model.to(memory_format=torch.channels_last)
        got = model(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("ae", ConvAutoencoder),
        ("unet", UNetAutoencoder),
        ("unet_coarse", UNetAutoencoder),
        ("vae", VariationalAutoencoder),
    ],
)
def test_model_yaml_instantiates(name, cls, x):
    # Composed by Hydra, as train.py sees it: unet_coarse extends unet through its defaults list.
    cfg = compose_config([f"model={name}", "data.image_size=32"])
    assert cfg.model.name == name
    model = instantiate(cfg.model.net)
    assert type(model) is cls
    assert model.latent_dim == cfg.model.latent_dim
    assert model(x).shape == x.shape


@pytest.mark.parametrize("cls", CLASSES)
def test_spatial_latent_is_a_vector_of_latent_dim_whose_cells_stay_local(cls, x):
    # SMALL at depth 3: a 4x4 map, so latent_dim 16 = 1 channel x 16 cells.
    torch.manual_seed(0)
    model = cls(**SMALL, latent_layout="spatial").eval()
    with torch.no_grad():
        z = model.encode(x)
        assert z.shape == (4, 16)
        assert model(x).shape == x.shape
        if cls is not UNetAutoencoder:
            torch.testing.assert_close(model(x), model.decode(z))
            # Changing one cell of z changes the decoded image near that cell only: no Linear
            # mixes the whole map (the dense layout's decoder changes everywhere).
            z2 = z.clone()
            z2[:, 0] += 5.0  # cell (0, 0): the top-left corner
            diff = (model.decode(z2) - model.decode(z)).abs().amax(dim=(0, 1))
            assert diff[-8:, -8:].max() == 0
            assert diff[:8, :8].max() > 0


@pytest.mark.parametrize(
    ("bad", "names"),
    [
        ({"latent_layout": "grid"}, ("latent_layout",)),
        ({"latent_dim": 20}, ("latent_dim", "latent_layout")),
    ],
)
def test_spatial_latent_settings_are_checked(bad, names):
    with pytest.raises(SettingError) as err:
        ConvAutoencoder(**{**SMALL, "latent_layout": "spatial", **bad})
    assert err.value.names == names
    if "latent_dim" in bad:  # a latent size that fills the 4x4 grid is suggested
        assert "multiple of 16 (e.g. 16)" in str(err.value)
