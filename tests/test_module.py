"""The LightningModule's own contract: compiled nets keep their checkpoints, a VAE without KL warns."""

import warnings

import pytest
import torch

from ae_lab.models import ConvAutoencoder, VariationalAutoencoder
from ae_lab.module import VAE_WITHOUT_KL, AutoencoderModule
from ae_lab.training import build_module, compile_network
from tests.compose import compose_config

SMALL = {"image_size": 32, "base_channels": 8, "depth": 3, "latent_dim": 8}


def _module(net: torch.nn.Module, kl_beta: float = 1e-4) -> AutoencoderModule:
    return AutoencoderModule(net, torch.nn.MSELoss(), torch.optim.Adam, kl_beta=kl_beta)


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
    for name in ("forward", "forward_with_kl", "encode"):  # the VAE's KL path and the latents too
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


def test_checkpoint_of_an_old_torch_compile_wrapper_loads_with_compile_off():
    source = _module(ConvAutoencoder(**SMALL))
    old = {k.replace("net.", "net._orig_mod.", 1): v for k, v in source.state_dict().items()}
    checkpoint = {"state_dict": old}
    target = _module(ConvAutoencoder(**SMALL))
    target.on_load_checkpoint(checkpoint)
    target.load_state_dict(checkpoint["state_dict"], strict=True)
    for key, value in source.state_dict().items():
        torch.testing.assert_close(target.state_dict()[key], value)


def test_vae_without_kl_says_it_is_a_noise_injected_autoencoder():
    with pytest.warns(UserWarning, match="noise-injected autoencoder") as record:
        _module(VariationalAutoencoder(**SMALL), kl_beta=0.0)
    assert str(record[0].message) == VAE_WITHOUT_KL and "model.kl_beta" in VAE_WITHOUT_KL
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _module(VariationalAutoencoder(**SMALL), kl_beta=1e-4)  # a real VAE: no warning
        _module(ConvAutoencoder(**SMALL), kl_beta=0.0)  # not variational: nothing to say
