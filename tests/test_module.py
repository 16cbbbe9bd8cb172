"""The LightningModule's own contract: compiled nets keep their checkpoints, a VAE without KL
warns, the test step encodes once and returns what callbacks read."""

import warnings

import pytest
import torch

from ae_lab import keys
from ae_lab.losses import L2Loss
from ae_lab.models import ConvAutoencoder, VariationalAutoencoder
from ae_lab.module import VAE_WITHOUT_KL, AutoencoderModule
from ae_lab.training import build_module, compile_network
from tests.compose import compose_config

SMALL = {"image_size": 32, "base_channels": 8, "depth": 3, "latent_dim": 8}


def _module(net: torch.nn.Module, kl_beta: float = 1e-4) -> AutoencoderModule:
    return AutoencoderModule(net, L2Loss(), torch.optim.Adam, kl_beta=kl_beta)


def _compiled(fn) -> bool:
    return hasattr(fn, "_torchdynamo_orig_callable")


def test_compile_keeps_state_dict_keys_and_compiles_every_path():
    cfg = compose_config(["model=vae", "data.image_size=32", "torch.compile=true"])
    compiled = build_module(cfg)
    plain = build_module(compose_config(["model=vae", "data.image_size=32"]))
    assert not any("_orig_mod" in k for k in compiled.state_dict())
    assert compiled.state_dict().keys() == plain.state_dict().keys()
    # A checkpoint of the compiled run loads, strictly, into a module built with compile off.
    plain.load_state_dict(compiled.state_dict(), strict=True)
    for name in ("forward", "forward_with_kl", "forward_with_latent", "encode"):
        assert _compiled(getattr(compiled.net, name)), name
        assert not _compiled(getattr(plain.net, name)), name


def test_compiled_vae_trains_and_encodes_through_the_compiled_code():
    torch.manual_seed(0)
    net = compile_network(VariationalAutoencoder(**SMALL), backend="eager")
    x = torch.rand(2, 3, 32, 32)
    recon, kl = net.forward_with_kl(x)
    (recon.mean() + kl).backward()
    assert net.encode(x).shape == (2, 8) and net(x).shape == x.shape
    assert all(p.grad is not None for p in net.encoder.parameters())


def test_vae_without_kl_says_it_is_a_noise_injected_autoencoder():
    with pytest.warns(UserWarning, match="noise-injected autoencoder") as record:
        _module(VariationalAutoencoder(**SMALL), kl_beta=0.0)
    assert str(record[0].message) == VAE_WITHOUT_KL and "model.kl_beta" in VAE_WITHOUT_KL
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _module(VariationalAutoencoder(**SMALL), kl_beta=1e-4)  # a real VAE: no warning
        _module(ConvAutoencoder(**SMALL), kl_beta=0.0)  # not variational: nothing to say


def test_test_step_encodes_once_and_returns_the_batch_scores():
    module = _module(ConvAutoencoder(**SMALL)).eval()
    calls = []
    module.net.to_latent.register_forward_hook(lambda *args: calls.append(1))
    batch = {
        "image": torch.rand(3, 3, 32, 32),
        "mask": torch.zeros(3, 1, 32, 32),
        "index": torch.tensor([5, 6, 7]),
        "label": torch.tensor([0, 1, 1]),
        "has_mask": torch.tensor([False, True, True]),
        "path": ["a.png", "b.png", "c.png"],
        "category": ["cable"] * 3,
        "defect": ["good", "cut", "cut"],
    }
    with torch.no_grad():
        out = module.test_step(batch, 0)
    assert len(calls) == 1
    assert out["z"].shape == (3, 8) and out["map"].shape == (3, 1, 32, 32)
    scores = out["scores"]
    assert list(scores.index) == [5, 6, 7]
    assert list(scores.columns) == [*keys.SCORE_COLUMNS, "loss"]
    # The `loss` column is the run's loss per image: its mean is the batch loss.
    expected = L2Loss()(out["recon"], batch["image"])
    assert scores["loss"].mean() == pytest.approx(expected.item(), rel=1e-5)
