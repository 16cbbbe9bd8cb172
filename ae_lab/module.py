"""The LightningModule: one network, one reconstruction loss, one optimizer, all injected by Hydra."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from torch import Tensor, nn

from ae_lab import keys
from ae_lab.errors import AeLabError
from ae_lab.losses import L1Loss, L2Loss, SSIMLoss
from ae_lab.metrics import image_metrics, pixel_metrics
from ae_lab.scoring import ScoringConfig, anomaly_map, image_score, per_image_errors


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
        self.test_scores: pd.DataFrame | None = None  # one row per test image, keys.SCORE_COLUMNS
        self.test_maps: Tensor | None = None  # [N,1,H,W] anomaly maps, float16 on CPU
        self.test_metrics: dict[str, float] = {}
        self._val_non_finite = False

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

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        x = batch["image"]
        recon = self.net(x)
        amap = anomaly_map(x, recon, self.scoring)
        errors = per_image_errors(x, recon, window_size=self.scoring.window_size)
        self._test_outputs.append(
            {
                "index": batch["index"].cpu(),
                "path": list(batch["path"]),
                "category": list(batch["category"]),
                "defect": list(batch["defect"]),
                "label": batch["label"].cpu(),
                "score": image_score(amap, self.scoring).cpu(),
                **{k: v.cpu() for k, v in errors.items()},
                "has_mask": batch["has_mask"].cpu(),
                # float16 halves the memory of the stacked maps; ranking metrics don't need more.
                "map": amap.cpu().half(),
                "mask": batch["mask"].cpu().bool(),
            }
        )

    def on_test_epoch_end(self) -> None:
        out = self._test_outputs
        if not out:
            return
        names = ("index", "label", "score", "l1", "l2", "ssim", "has_mask", "map", "mask")
        cat = {k: torch.cat([o[k] for o in out]) for k in names}
        strings = {k: [s for o in out for s in o[k]] for k in ("path", "category", "defect")}
        cat, strings = self._gather_ranks(cat, strings)
        self.test_scores = pd.DataFrame(
            {
                "path": strings["path"],
                "category": strings["category"],
                "defect": strings["defect"],
                "label": cat["label"].numpy().astype(int),
                "score": cat["score"].float().numpy(),
                "l1": cat["l1"].float().numpy(),
                "l2": cat["l2"].float().numpy(),
                "ssim": cat["ssim"].float().numpy(),
                "has_mask": cat["has_mask"].numpy().astype(bool),
            },
            index=cat["index"].numpy(),
        )[list(keys.SCORE_COLUMNS)]
        self.test_maps = cat["map"]
        masks = cat["mask"]
        metrics = image_metrics(self.test_scores)
        metrics |= pixel_metrics(
            self.test_maps.float(),
            masks,
            strings["category"],
            cat["has_mask"].bool(),
            labels=cat["label"],  # defective images without a mask are left out of pixel metrics
        )
        self.test_metrics = metrics
        self._test_outputs = []
        for key, value in metrics.items():
            # Every rank computed the same value from the same gathered set; the sync is a no-op
            # average that keeps Lightning's distributed epoch-end logging consistent.
            self.log(key, value, sync_dist=True)

    def _gather_ranks(
        self, tensors: dict[str, Tensor], strings: dict[str, list[str]]
    ) -> tuple[dict[str, Tensor], dict[str, list[str]]]:
        """Under DDP: every rank's test outputs, each image once, in `index` order (the same on
        every rank); in a single process: unchanged. Tensors are [n, ...] on the CPU.

        DistributedSampler pads the last rank with repeated images so that ranks get equal counts;
        the repeats are dropped by `index`. Ranks may still hold different counts (e.g. with
        `limit_test_batches`), so tensors are padded to the longest before `all_gather`.
        """
        if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return tensors, strings
        sizes = self.all_gather(torch.tensor(len(tensors["index"]), device=self.device))
        sizes = [int(n) for n in sizes.flatten()]
        gathered = {}
        for key, value in tensors.items():
            dtype = value.dtype
            value = value.to(torch.uint8) if dtype == torch.bool else value  # gloo has no bool
            pad = value.new_zeros((max(sizes) - len(value), *value.shape[1:]))
            full = self.all_gather(torch.cat([value, pad]).to(self.device)).cpu()  # [world, n]
            gathered[key] = torch.cat([full[r, :n] for r, n in enumerate(sizes)]).to(dtype)
        per_rank: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(per_rank, strings)
        joined = {k: [s for rank in per_rank for s in rank[k]] for k in strings}
        _, first = np.unique(gathered["index"].numpy(), return_index=True)  # sorted by index
        keep = torch.from_numpy(first)
        return (
            {k: v[keep] for k, v in gathered.items()},
            {k: [v[i] for i in first] for k, v in joined.items()},
        )

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(params=self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer=optimizer)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"},
        }
