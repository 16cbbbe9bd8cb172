"""The LightningModule: one network, one reconstruction loss, one optimizer (and optional
scheduler), one scoring; `conf/model/*.yaml` instantiates it."""

import inspect
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import pandas as pd
import torch
from omegaconf import OmegaConf
from torch import Tensor, nn

from ae_lab import keys
from ae_lab.batch import Batch, Predictions
from ae_lab.errors import AeLabError, SettingError, check_number
from ae_lab.losses import per_image_errors
from ae_lab.metrics import image_metrics, pixel_metrics
from ae_lab.scoring import Scoring, anomaly_map, image_score

VAE_WITHOUT_KL = (
    "kl_beta=0 with a variational network: there is no KL term, yet training still samples "
    "z = mu + sigma * eps, so this trains a noise-injected autoencoder, not a VAE (evaluation "
    "decodes mu). Give kl_beta > 0 (e.g. 1e-4) for a VAE, or use a ConvAutoencoder."
)
VAL_ERRORS = {"l1": keys.VAL_L1, "l2": keys.VAL_L2, "ssim": keys.VAL_ONE_MINUS_SSIM}


class NonFiniteLossError(AeLabError):
    """Training diverged (a NaN/inf loss, validation loss or weight); nothing non-finite is saved.
    `last_checkpoint`: the last (finite) checkpoint, if any."""

    def __init__(self, message: str, last_checkpoint: str | None) -> None:
        super().__init__(message)
        self.last_checkpoint = last_checkpoint


def non_finite_tensors(tensors: dict[str, Tensor]) -> list[str]:
    """Names of the floating-point tensors (weights, BatchNorm statistics) holding NaN or inf."""
    return [k for k, t in tensors.items() if t.is_floating_point() and not torch.isfinite(t).all()]


def wants_total_steps(factory: Callable[..., Any]) -> bool:
    """A partial scheduler (e.g. OneCycleLR) that takes `total_steps` and was not given it."""
    param = inspect.signature(factory).parameters.get("total_steps")
    return param is not None and param.default is None


class AutoencoderModule(L.LightningModule):
    """Trains `net` to reconstruct normal images and scores test images by reconstruction error.

    Args:
        net: an autoencoder (`forward_with_latent(x) -> (recon, z)`; a VAE also has
            `forward_with_kl(x) -> (recon, kl)`).
        loss: reconstruction loss `(recon, target) -> scalar`, with `per_image` (ae_lab.losses).
        optimizer: a partial optimizer, called with the parameters.
        scheduler: an optional partial LR scheduler, called with the optimizer.
        scoring: how test images become anomaly maps and image scores.
        kl_beta: weight of the VAE's KL term (ignored for deterministic networks).
        name: the architecture's name in run names and tables (`ae`, `unet`, ...).
        latent_dim: the size of z, which must be the network's.

    Each of net, loss, optimizer, scheduler and scoring is the object or its `_target_` config;
    built from configs, the module stores them as hyper-parameters, so that
    `AutoencoderModule.load_from_checkpoint(path)` rebuilds it from the file alone.
    """

    def __init__(
        self,
        net: nn.Module | Mapping,
        loss: nn.Module | Mapping,
        optimizer: Callable[..., torch.optim.Optimizer] | Mapping,
        scheduler: Callable[..., Any] | Mapping | None = None,
        scoring: Scoring | Mapping | None = None,
        kl_beta: float = 0.0,
        name: str = "autoencoder",
        latent_dim: int | None = None,
    ) -> None:
        super().__init__()
        given = dict(net=net, loss=loss, optimizer=optimizer, scheduler=scheduler, scoring=scoring)
        # Plain dicts and lists: what a checkpoint stores and torch.load(weights_only=True) reads.
        plain = {k: OmegaConf.create(v) for k, v in given.items() if isinstance(v, Mapping)}
        configs = {k: OmegaConf.to_container(v, resolve=True) for k, v in plain.items()}
        self.save_hyperparameters(
            configs | {"kl_beta": kl_beta, "name": name, "latent_dim": latent_dim}, logger=False
        )
        built = {k: hydra.utils.instantiate(v) if k in configs else v for k, v in given.items()}
        self.net, self.loss_fn = built["net"], built["loss"]
        self.optimizer_factory, self.scheduler_factory = built["optimizer"], built["scheduler"]
        self.scoring = built["scoring"] or Scoring()
        check_number(AutoencoderModule, "kl_beta", kl_beta, 0.0, 1e6)
        self.kl_beta, self.name = kl_beta, name
        if latent_dim is not None and getattr(self.net, "latent_dim", latent_dim) != latent_dim:
            why = f"latent_dim={latent_dim} differs from the network's {self.net.latent_dim}"
            raise SettingError(AutoencoderModule, "latent_dim", why)
        self._check_optimizer()
        self._test_batches: list[tuple[pd.DataFrame, Tensor, Tensor]] = []
        self._val_non_finite = False
        if kl_beta == 0 and hasattr(self.net, "forward_with_kl"):
            warnings.warn(VAE_WITHOUT_KL, UserWarning, stacklevel=2)

    def _check_optimizer(self) -> None:
        """Build the optimizer and scheduler once on a dummy parameter: a bad value (a negative
        learning rate, a string) fails now, not inside fit."""
        part = "optimizer"
        try:
            trial = self.optimizer_factory(params=[nn.Parameter(torch.zeros(1))])
            part = "scheduler"
            if self.scheduler_factory is not None:
                steps = {"total_steps": 10} if wants_total_steps(self.scheduler_factory) else {}
                self.scheduler_factory(optimizer=trial, **steps)
        except (TypeError, ValueError) as exc:
            raise SettingError(AutoencoderModule, part, f"the {part}: {exc}") from exc

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # A resumed run may be longer (`max_epochs` raised): keep the new run's length, computed
        # in configure_optimizers, instead of the saved one, which OneCycleLR would otherwise
        # restore and then refuse to step past. The step count carries on.
        for sched in checkpoint.get("lr_schedulers") or []:
            sched.pop("total_steps", None)
            sched.pop("_schedule_phases", None)

    def forward(self, x: Tensor) -> Tensor:
        """x: [B,3,H,W] in [0,1] -> reconstruction [B,3,H,W]."""
        return self.net(x)

    def _loss(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """(loss, recon, z); z is None for a VAE trained with its KL term."""
        if self.kl_beta > 0 and hasattr(self.net, "forward_with_kl"):
            recon, kl = self.net.forward_with_kl(x)
            return self.loss_fn(recon, x) + self.kl_beta * kl, recon, None
        recon, z = self.net.forward_with_latent(x)
        return self.loss_fn(recon, x), recon, z

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        loss, _, _ = self._loss(batch.image)
        if not torch.isfinite(loss):
            # Raise before the optimizer step so the weights (and last.ckpt) stay finite.
            raise self._diverged(f"the training loss became {loss.item()}")
        # sync_dist: under DDP, the mean over every rank's batches.
        self.log(
            keys.TRAIN_LOSS,
            loss,
            on_step=False,
            on_epoch=True,
            prog_bar=True,
            batch_size=len(batch),
            sync_dist=True,
        )
        return loss

    def validation_step(self, batch: Batch, batch_idx: int) -> Predictions:
        x, n = batch.image, len(batch)
        loss, recon, z = self._loss(x)
        self._val_non_finite = self._val_non_finite or not bool(torch.isfinite(loss))
        self.log(keys.VAL_LOSS, loss, prog_bar=True, batch_size=n, sync_dist=True)
        # Loss-independent errors, so runs trained with different losses compare.
        errors = per_image_errors(x, recon, self.scoring.window_size)
        for name, key in VAL_ERRORS.items():
            self.log(key, errors[name].mean(), batch_size=n, sync_dist=True)
        return Predictions(recon=recon, z=self.net.encode(x) if z is None else z)

    # ---- divergence guard: these hooks run before ModelCheckpoint saves, so no checkpoint
    # (last or "best") ever holds NaN/inf weights; a finite loss can hide them behind BatchNorm.
    def on_validation_epoch_start(self) -> None:
        self._val_non_finite = False

    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking:
            self._check_finite("the validation loss became NaN/inf" if self._val_non_finite else "")

    def on_train_epoch_end(self) -> None:
        self._check_finite("")  # covers runs without validation images

    def _check_finite(self, problem: str) -> None:
        bad = non_finite_tensors(self.state_dict())
        if bad:
            problem = problem or f"{len(bad)} weight/statistic tensors hold NaN/inf (e.g. {bad[0]})"
        # Every process decides together: one raising alone would hang distributed training.
        if self.trainer.strategy.reduce_boolean_decision(bool(problem), all=False):
            raise self._diverged(problem or "another process's weights or loss became NaN/inf")

    def _diverged(self, problem: str) -> NonFiniteLossError:
        """What went wrong and which checkpoint is good; the command line adds what to try."""
        # last.ckpt: a `save_last` file, or that of a monitor-free top-1 checkpoint (the latest).
        saved = [
            cb.last_model_path or (cb.monitor is None and cb.best_model_path)
            for cb in self.trainer.checkpoint_callbacks
        ]
        last = next((path for path in saved if path and Path(path).is_file()), None)
        saved = (
            f"No checkpoint with NaN/inf was saved: {last} is the last one and its weights "
            "are finite."
            if last
            else "No checkpoint was saved: the run diverged before the end of its first epoch."
        )
        where = f"epoch {self.current_epoch}, step {self.global_step}"
        return NonFiniteLossError(f"Training stopped at {where}: {problem}. {saved}", last)

    @torch.no_grad()
    def predict(self, batch: Batch) -> Predictions:
        """Encode a batch once: recon, z [B,D], anomaly map [B,1,H,W] and the score table (one
        row per image, indexed by its dataset row)."""
        x = batch.image
        recon, z = self.net.forward_with_latent(x)
        amap = anomaly_map(x, recon, self.scoring)
        errors = per_image_errors(x, recon, self.scoring.window_size)
        columns = {
            "path": batch.path,
            "category": batch.category,
            "defect": batch.defect,
            "label": batch.label.cpu().numpy().astype(int),
            "score": image_score(amap, self.scoring).cpu().numpy(),
            **{k: v.cpu().numpy() for k, v in errors.items()},
            "has_mask": batch.has_mask.cpu().numpy().astype(bool),
            "loss": self.loss_fn.per_image(recon.float(), x.float()).cpu().numpy(),
        }
        scores = pd.DataFrame(columns, index=batch.index.cpu().numpy())
        return Predictions(recon=recon, z=z, anomaly_map=amap, scores=scores)

    def test_step(self, batch: Batch, batch_idx: int) -> Predictions:
        out = self.predict(batch)
        # float16 halves the memory of the stacked maps; ranking metrics don't need more.
        maps = out.anomaly_map.half().cpu()
        self._test_batches.append((out.scores, maps, batch.mask.bool().cpu()))
        return out

    def on_test_epoch_end(self) -> None:
        if not self._test_batches:
            return
        tables, maps, masks = zip(*self._test_batches, strict=True)
        self._test_batches = []
        scores = pd.concat(tables)
        metrics = image_metrics(scores) | pixel_metrics(
            torch.cat(maps).float(),
            torch.cat(masks),
            scores["category"].tolist(),
            scores["has_mask"].to_numpy(),
            labels=scores["label"].to_numpy(),  # defective images without a mask are left out
        )
        self.log_dict(metrics)

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(params=self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        kwargs: dict[str, Any] = {}
        if wants_total_steps(self.scheduler_factory):
            # One-cycle schedules are per step and must know the run's length; Lightning knows it
            # from max_epochs/max_steps and the loader, so the config need not repeat it.
            kwargs["total_steps"] = max(1, int(self.trainer.estimated_stepping_batches))
        scheduler = self.scheduler_factory(optimizer=optimizer, **kwargs)
        interval = "step" if kwargs else "epoch"
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": interval},
        }
