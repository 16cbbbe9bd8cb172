"""ae_lab.module: the LightningModule built from objects or from `_target_` configs, its argument
checks, the VAE-without-KL warning, and what its test step computes and returns."""

import functools
import warnings

import hydra
import pytest
import torch

from ae_lab import keys
from ae_lab.batch import Batch, Predictions
from ae_lab.errors import SettingError
from ae_lab.losses import L2Loss, SSIMLoss
from ae_lab.models import ConvAutoencoder, UNetAutoencoder, VariationalAutoencoder
from ae_lab.module import VAE_WITHOUT_KL, AutoencoderModule
from ae_lab.scoring import Scoring
from tests.compose import compose_config

SMALL = {"image_size": 32, "base_channels": 8, "depth": 3, "latent_dim": 8}


def _module(net: torch.nn.Module, kl_beta: float = 1e-4, **kwargs) -> AutoencoderModule:
    return AutoencoderModule(net, L2Loss(), torch.optim.Adam, kl_beta=kl_beta, **kwargs)


def _batch(n: int = 3, size: int = 32) -> Batch:
    return Batch(
        image=torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(0)),
        label=torch.tensor([0] + [1] * (n - 1)),
        mask=torch.zeros(n, 1, size, size),
        has_mask=torch.tensor([False] + [True] * (n - 1)),
        index=torch.arange(5, 5 + n),
        category=["cable"] * n,
        defect=["good"] + ["cut"] * (n - 1),
        path=[f"{i}.png" for i in range(n)],
    )


@pytest.mark.parametrize(
    ("model", "net"),
    [("ae", ConvAutoencoder), ("unet_coarse", UNetAutoencoder), ("vae", VariationalAutoencoder)],
)
def test_model_config_instantiates_the_module_with_the_runs_parts(model, net):
    cfg = compose_config([f"model={model}", "loss=ssim", "data.image_size=32", "scoring.sigma=1"])
    module = hydra.utils.instantiate(cfg.model)
    assert isinstance(module, AutoencoderModule) and type(module.net) is net
    assert module.name == model and module.net.latent_dim == cfg.model.latent_dim
    assert isinstance(module.loss_fn, SSIMLoss) and module.scoring == Scoring(sigma=1.0)
    assert module.kl_beta == cfg.model.kl_beta
    # The parts' configs are the module's hyper-parameters: what load_from_checkpoint rebuilds.
    hparams = module.hparams
    assert hparams["net"]["_target_"] == f"ae_lab.models.{net.__name__}"
    assert hparams["loss"]["_target_"] == "ae_lab.losses.SSIMLoss"
    assert hparams["optimizer"]["lr"] == cfg.optimizer.lr
    assert hparams["scheduler"]["max_lr"] == cfg.optimizer.lr
    rebuilt = AutoencoderModule(**dict(hparams))
    assert rebuilt.state_dict().keys() == module.state_dict().keys()


def test_no_scheduler_and_default_scoring():
    module = _module(ConvAutoencoder(**SMALL))
    assert module.scheduler_factory is None and module.scoring == Scoring()
    assert isinstance(module.configure_optimizers(), torch.optim.Adam)


@pytest.mark.parametrize(
    ("part", "value"),
    [
        ("optimizer", functools.partial(torch.optim.AdamW, lr=-1.0)),
        ("optimizer", functools.partial(torch.optim.AdamW, lr="fast")),
        ("optimizer", functools.partial(torch.optim.AdamW, momentum=0.9)),  # not an AdamW argument
        (
            "scheduler",
            functools.partial(torch.optim.lr_scheduler.OneCycleLR, max_lr=1, pct_start=2),
        ),
    ],
)
def test_optimizer_and_scheduler_are_tried_when_the_module_is_built(part, value):
    parts = {"optimizer": torch.optim.Adam} | {part: value}
    with pytest.raises(SettingError, match=f"the {part}") as err:
        AutoencoderModule(ConvAutoencoder(**SMALL), L2Loss(), **parts)
    assert err.value.owner is AutoencoderModule and err.value.names == (part,)


def test_one_cycle_schedule_needs_no_total_steps_in_the_config():
    one_cycle = functools.partial(torch.optim.lr_scheduler.OneCycleLR, max_lr=1e-3)
    _module(ConvAutoencoder(**SMALL), scheduler=one_cycle)  # tried with a stand-in length


def test_latent_dim_must_be_the_networks():
    with pytest.raises(SettingError, match=r"latent_dim=16 differs from the network's 8") as err:
        _module(ConvAutoencoder(**SMALL), latent_dim=16)
    assert err.value.names == ("latent_dim",)


def test_vae_without_kl_says_it_is_a_noise_injected_autoencoder():
    with pytest.warns(UserWarning, match="noise-injected autoencoder") as record:
        _module(VariationalAutoencoder(**SMALL), kl_beta=0.0)
    assert str(record[0].message) == VAE_WITHOUT_KL and "kl_beta" in VAE_WITHOUT_KL
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _module(VariationalAutoencoder(**SMALL), kl_beta=1e-4)  # a real VAE: no warning
        _module(ConvAutoencoder(**SMALL), kl_beta=0.0)  # not variational: nothing to say


def test_test_step_encodes_once_and_returns_the_batch_scores():
    module = _module(ConvAutoencoder(**SMALL)).eval()
    calls = []
    module.net.to_latent.register_forward_hook(lambda *args: calls.append(1))
    batch = _batch()
    with torch.no_grad():
        out = module.test_step(batch, 0)
    assert len(calls) == 1
    assert isinstance(out, Predictions)
    assert out.z.shape == (3, 8) and out.anomaly_map.shape == (3, 1, 32, 32)
    assert out.recon.shape == batch.image.shape
    scores = out.scores
    assert list(scores.index) == [5, 6, 7]  # the images' rows in the split's table
    assert list(scores.columns) == [*keys.SCORE_COLUMNS, "loss"]
    assert scores["path"].tolist() == batch.path and scores["label"].tolist() == [0, 1, 1]
    # The `loss` column is the run's loss per image: its mean is the batch loss.
    expected = L2Loss()(out.recon, batch.image)
    assert scores["loss"].mean() == pytest.approx(expected.item(), rel=1e-5)


def test_predict_is_deterministic_for_a_vae_in_eval_mode():
    module = _module(VariationalAutoencoder(**SMALL)).eval()
    first, second = module.predict(_batch()), module.predict(_batch())
    torch.testing.assert_close(first.recon, second.recon)
    assert first.scores["score"].tolist() == second.scores["score"].tolist()


def test_validation_step_returns_latents_also_when_training_with_the_kl_term():
    module = _module(VariationalAutoencoder(**SMALL), kl_beta=1e-4).eval()
    module.log = lambda *args, **kwargs: None  # no trainer to log to
    out = module.validation_step(_batch(), 0)
    assert out.z.shape == (3, 8) and out.anomaly_map is None and out.scores is None
    torch.testing.assert_close(out.z, module.net.encode(_batch().image))
