"""The LightningModule: one network, one reconstruction loss, one optimizer, all injected by Hydra."""

import inspect
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import pandas as pd
import torch
from torch import Tensor, nn

from ae_lab import keys
from ae_lab.errors import AeLabError
from ae_lab.evaluation.predictions import TestPredictions, batch_record, gather_predictions
from ae_lab.losses import L1Loss, L2Loss, SSIMLoss
from ae_lab.metrics import evaluate
from ae_lab.scoring import ScoringConfig, anomaly_map, image_score, per_image_errors

COMPILED_PREFIX = "_orig_mod."
ONE_CYCLE_LENGTH_KEYS = (
    "total_steps",
    "_schedule_phases",
)  # OneCycleLR state that fixes its length  # what `torch.compile(net)` adds to every state-dict key
VAE_WITHOUT_KL = (
    "model.kl_beta=0 with a variational network (model=vae): there is no KL term, yet training "
    "still samples z = mu + sigma * eps, so this trains a noise-injected autoencoder, not a VAE "
    "(evaluation decodes mu). Set model.kl_beta > 0 (e.g. 1e-4) for a VAE, or use model=ae."
)


class NonFiniteLossError(AeLabError):
    """Training diverged (a NaN/inf loss, validation loss or weight); nothing non-finite is saved."""


def non_finite_tensors(tensors: dict[str, Tensor]) -> list[str]:
    """Names of the floating-point tensors (weights, BatchNorm statistics) holding NaN or inf."""
    return [k for k, t in tensors.items() if t.is_floating_point() and not torch.isfinite(t).all()]


class AutoencoderModule(L.LightningModule):
    """Trains `net` to reconstruct normal images and scores test images by reconstruction error.

    Args:
        net: an autoencoder (`forward(x) -> recon`, `encode(x) -> z`; a VAE also has `forward_with_kl`).
        loss: reconstruction loss `(recon, target) -> scalar`.
        optimizer: a partial optimizer (`_partial_: true`), called with the parameters.
        scheduler: an optional partial LR scheduler, called with the optimizer.
        kl_beta: weight of the VAE's KL term (ignored for deterministic networks).
        scoring: how test images become anomaly maps and image scores.
    """

    def __init__(
        self,
        net: nn.Module,
        loss: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        kl_beta: float = 0.0,
        scoring: ScoringConfig | None = None,
    ) -> None:
        super().__init__()
        self.net = net
        self.loss_fn = loss
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.kl_beta = kl_beta
        self.scoring = scoring or ScoringConfig()
        # Loss-independent validation errors, so runs trained with different losses compare.
        self.val_errors = nn.ModuleDict({"l1": L1Loss(), "l2": L2Loss(), "ssim": SSIMLoss()})
        self._test_outputs: list[dict[str, Any]] = []
        self.predictions: TestPredictions | None = None  # the whole test set, after testing
        self.test_metrics: dict[str, float] = {}  # `evaluate(predictions)`
        self._val_non_finite = False
        if kl_beta == 0 and hasattr(net, "forward_with_kl"):
            warnings.warn(VAE_WITHOUT_KL, UserWarning, stacklevel=2)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Checkpoints of runs that wrapped the net in `torch.compile(net)` (before
        # `compile_network`) carry `net._orig_mod.*` keys; the weights are the same.
        state = checkpoint.get("state_dict") or {}
        checkpoint["state_dict"] = {k.replace(COMPILED_PREFIX, ""): v for k, v in state.items()}
        # A resumed run may be longer (`trainer.max_epochs` raised): keep the new run's length,
        # computed in configure_optimizers, instead of the saved one, which OneCycleLR would
        # otherwise restore and then refuse to step past. The step count carries on.
        for sched in checkpoint.get("lr_schedulers") or []:
            for key in ONE_CYCLE_LENGTH_KEYS:
                sched.pop(key, None)

    def forward(self, x: Tensor) -> Tensor:
        """x: [B,3,H,W] in [0,1] -> reconstruction [B,3,H,W]."""
        return self.net(x)

    def _reconstruct(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        if self.kl_beta > 0 and hasattr(self.net, "forward_with_kl"):
            return self.net.forward_with_kl(x)
        return self.net(x), None

    def _loss(self, x: Tensor) -> tuple[Tensor, Tensor]:
        recon, kl = self._reconstruct(x)
        loss = self.loss_fn(recon, x)
        if kl is not None:
            loss = loss + self.kl_beta * kl
        return loss, recon

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        loss, _ = self._loss(batch["image"])
        if not torch.isfinite(loss):
            # Raise before the optimizer step so the weights (and last.ckpt) stay finite.
            raise self._diverged(f"the training loss became {loss.item()}")
        self.log(
            keys.TRAIN_LOSS,
            loss,
            on_step=False,
            on_epoch=True,
            prog_bar=True,
            batch_size=len(batch["image"]),
            sync_dist=True,  # under DDP: the mean over every rank's batches
        )
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        x = batch["image"]
        loss, recon = self._loss(x)
        n = len(x)
        self._val_non_finite = self._val_non_finite or not bool(torch.isfinite(loss))
        # sync_dist: under DDP every rank logs (and checkpoints on) the mean over all ranks.
        self.log(keys.VAL_LOSS, loss, on_epoch=True, prog_bar=True, batch_size=n, sync_dist=True)
        for name, key in (
            ("l1", keys.VAL_L1),
            ("l2", keys.VAL_L2),
            ("ssim", keys.VAL_ONE_MINUS_SSIM),
        ):
            value = self.val_errors[name](recon, x)
            self.log(key, value, on_epoch=True, batch_size=n, sync_dist=True)

    # ---- divergence guard: these hooks run before ModelCheckpoint saves, so no checkpoint
    # (last or "best") ever holds NaN/inf weights; a finite loss can hide them behind BatchNorm.
    def on_validation_epoch_start(self) -> None:
        self._val_non_finite = False

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
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
        """The error for a diverged run: what went wrong, which checkpoint is good, what to try."""
        trainer = self.trainer
        checkpoint = trainer.checkpoint_callback
        last = getattr(checkpoint, "last_model_path", "") or ""
        if last and Path(last).is_file():
            saved = (
                f"No checkpoint with NaN/inf was saved: {last} is the last one and its weights are "
                f"finite (evaluate it with `train=false ckpt_path={last}`)."
            )
        else:
            saved = "No checkpoint was saved: the run diverged before the end of its first epoch."
        lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else None
        fix = f"optimizer.lr={lr:g} now, try 10x lower" if lr else "optimizer.lr=..."
        if not trainer.gradient_clip_val:  # already on in trainer=default
            fix += ", or clip gradients with trainer.gradient_clip_val=1.0"
        # Resuming would restore the optimizer's state, learning rate included: start again.
        return NonFiniteLossError(
            f"Training stopped at epoch {self.current_epoch}, step {self.global_step}: {problem}. "
            f"{saved} Train again with a lower learning rate ({fix})."
        )

    def on_test_epoch_start(self) -> None:
        self._test_outputs = []

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Tensor]:
        """One test batch's predictions, computed once: recon, map, score, errors, z [B,D].

        Returned as the batch's `outputs` for callbacks; a CPU copy is kept for the epoch end.
        """
        x = batch["image"]
        recon = self.net(x)
        amap = anomaly_map(x, recon, self.scoring)
        predictions = {
            "recon": recon,
            "map": amap,
            "score": image_score(amap, self.scoring),
            "z": self.net.encode(x).flatten(1),
            **per_image_errors(x, recon, window_size=self.scoring.window_size),
        }
        self._test_outputs.append(batch_record(batch, predictions))
        return predictions

    def on_test_epoch_end(self) -> None:
        # A collective under DDP: every rank ends up with the whole test set.
        self.predictions = gather_predictions(
            self._test_outputs, lambda t: self.all_gather(t.to(self.device))
        )
        self._test_outputs = []
        if self.predictions is None:
            return
        self.test_metrics = evaluate(self.predictions)
        for key, value in self.test_metrics.items():
            # Every rank computed the same value from the same gathered set; the sync is a no-op
            # average that keeps Lightning's distributed epoch-end logging consistent.
            self.log(key, value, sync_dist=True)

    @property
    def test_scores(self) -> pd.DataFrame | None:
        """One row per test image (keys.SCORE_COLUMNS), after `trainer.test`."""
        return None if self.predictions is None else self.predictions.scores

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
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step" if kwargs else "epoch"},
        }


def wants_total_steps(factory: Callable[..., Any]) -> bool:
    """A partial scheduler (e.g. OneCycleLR) that takes `total_steps` and was not given it."""
    func = getattr(factory, "func", factory)
    given = getattr(factory, "keywords", {}) or {}
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):
        return False
    return "total_steps" in params and given.get("total_steps") is None
