"""The W&B media of a run: reconstructions, latent t-SNE maps, score tables and histograms."""

import functools
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import WandbLogger
from torch import Tensor

from ae_lab import keys
from ae_lab.evaluation.latents import collect_latents, tsne_2d, tsne_table
from ae_lab.evaluation.predictions import TestPredictions, gather_objects
from ae_lab.figures import static
from ae_lab.figures.images import anomaly_strip, reconstruction_grid
from ae_lab.figures.interactive import error_histograms, loss_error, tsne_figure
from ae_lab.tracking.selection import select_test, select_val

log = logging.getLogger(__name__)

CHECKPOINT_BEST = "checkpoint/best"  # summary: path of the best checkpoint of this run
CHECKPOINT_EVALUATED = "checkpoint/evaluated"  # summary: checkpoint the test metrics come from
EPOCH_AXIS_KEYS = (
    *keys.LOSS_CURVES,
    keys.VAL_RECONSTRUCTIONS,
    keys.VAL_LATENT_TSNE,
    keys.VAL_LATENT_TSNE_TABLE,
    keys.VAL_LATENT_TSNE_IMAGE,
)


def never_fatal(hook: Callable[..., None]) -> Callable[..., None]:
    """Media are extras: an error in a media hook is logged and the run (its checkpoints, its
    metrics) goes on, instead of Lightning aborting fit before `last.ckpt` is written."""

    @functools.wraps(hook)
    def guarded(self: Callback, *args: Any, **kwargs: Any) -> None:
        try:
            hook(self, *args, **kwargs)
        except Exception as exc:
            log.warning(
                "W&B media skipped: %s failed (%s: %s)",
                hook.__name__,
                type(exc).__name__,
                exc,
                exc_info=True,  # a bug in a media hook should still be visible
            )

    return guarded


@contextmanager
def evaluating(module: torch.nn.Module) -> Iterator[None]:
    """Eval mode and no autograd for the block; the previous train/eval mode is restored."""
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        module.train(was_training)


def has_wandb_logger(trainer: L.Trainer) -> bool:
    """True on every rank of a run that logs to W&B (only rank zero holds the W&B run)."""
    return any(isinstance(logger, WandbLogger) for logger in trainer.loggers)


def wandb_run(trainer: L.Trainer) -> Any | None:
    """The W&B run of the trainer's WandbLogger on global rank zero, else None."""
    if not trainer.is_global_zero:
        return None
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            return logger.experiment
    return None


class WandbMediaCallback(Callback):
    """Logs what each run shows in W&B, on rank zero, at epoch ends only (never per step).

    Args:
        every_n_epochs: `val/reconstructions` every n epochs (0: only at the end of training).
        tsne_every_n_epochs: `val/latent_tsne` every n epochs (0: only at the end of training).
        n_images: how many validation / test images the reconstruction media show.
        tsne_test: also embed the test latents (`test/latent_tsne`), coloured good vs defective.
        selection_seed: seed of the fixed image selection; the same for every run on purpose.
        grid_columns: originals (and reconstructions) per grid row in `val/reconstructions`.
        loss, loss_alpha: the run's loss (`cfg.loss.name`, its `alpha` for ssim_l1): the error
            that `test/error_histograms` show; `test/score_histograms` show the anomaly score.
    """

    def __init__(
        self,
        every_n_epochs: int = 5,
        tsne_every_n_epochs: int = 0,
        n_images: int = 16,
        tsne_test: bool = True,
        selection_seed: int = 0,
        grid_columns: int = 8,
        loss: str = "l2",
        loss_alpha: float = 0.84,
    ) -> None:
        self.every_n_epochs = int(every_n_epochs)
        self.tsne_every_n_epochs = int(tsne_every_n_epochs)
        self.n_images = int(n_images)
        self.tsne_test = bool(tsne_test)
        self.selection_seed = int(selection_seed)
        self.grid_columns = int(grid_columns)
        self.loss, self.loss_alpha = str(loss), float(loss_alpha)
        self.timings: dict[str, float] = {}  # seconds of the last media step of each kind
        self._defined_for: str | None = None
        self._val_images: Tensor | None = None
        self._logged: dict[str, set[int]] = {"recon": set(), "tsne": set()}
        self._last_epoch: int | None = None
        self._said_no_val = False
        self._test_rows: list[int] = []
        self._test_picked: dict[int, tuple[Tensor, ...]] = {}  # row -> image, recon, map, mask
        self._losses: list[tuple[int, float, float]] = []  # (epoch, train/loss, val/loss)

    # ---- setup ----------------------------------------------------------------------------------
    @never_fatal
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        run = wandb_run(trainer)
        if run is None or self._defined_for == run.id:
            return
        # Explicit names win over Lightning's `*` glob (x-axis trainer/global_step), so loss
        # curves and val media use `epoch` and runs with different batch counts line up.
        run.define_metric(keys.EPOCH)
        for key in EPOCH_AXIS_KEYS:
            run.define_metric(key, step_metric=keys.EPOCH)
        self._defined_for = run.id

    # ---- validation media -----------------------------------------------------------------------
    @never_fatal
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch = trainer.current_epoch
        self._last_epoch = epoch
        metrics = trainer.callback_metrics  # validation ran before this hook in each epoch
        if keys.TRAIN_LOSS in metrics and keys.VAL_LOSS in metrics:
            losses = (float(metrics[keys.TRAIN_LOSS]), float(metrics[keys.VAL_LOSS]))
            self._losses.append((epoch, *losses))
        recon = self.every_n_epochs > 0 and (epoch + 1) % self.every_n_epochs == 0
        tsne = self.tsne_every_n_epochs > 0 and (epoch + 1) % self.tsne_every_n_epochs == 0
        self._log_val_media(trainer, pl_module, epoch, recon, tsne)

    @never_fatal
    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch = self._last_epoch
        if epoch is None:
            return
        recon, tsne = epoch not in self._logged["recon"], epoch not in self._logged["tsne"]
        self._log_val_media(trainer, pl_module, epoch, recon, tsne)
        self._log_loss_panel(trainer)

    def _log_loss_panel(self, trainer: L.Trainer) -> None:
        """`train/loss` and `val/loss` against epoch in one W&B chart (a line series): the
        workspace otherwise gives every key its own panel."""
        run = wandb_run(trainer)
        if run is None or not self._losses:
            return
        import wandb

        epochs, train, val = (list(x) for x in zip(*self._losses, strict=True))
        chart = wandb.plot.line_series(
            xs=epochs, ys=[train, val], keys=[keys.TRAIN_LOSS, keys.VAL_LOSS],
            title="train/loss and val/loss", xname=keys.EPOCH,
        )  # fmt: skip
        run.log({keys.TRAIN_VAL_LOSS: chart})

    def _log_val_media(
        self, trainer: L.Trainer, module: L.LightningModule, epoch: int, recon: bool, tsne: bool
    ) -> None:
        run = wandb_run(trainer)
        if run is None or not (recon or tsne) or trainer.datamodule is None:
            return
        if trainer.datamodule.table("val").empty:  # data.val_fraction=0
            if not self._said_no_val:
                log.warning("No validation images (data.val_fraction=0): validation media skipped.")
                self._said_no_val = True
            return
        import wandb

        payload: dict[str, Any] = {keys.EPOCH: epoch}
        with evaluating(module):
            if recon:
                start = time.perf_counter()
                images = self._selected_val_images(trainer)
                recons = module(images.to(module.device)).cpu()
                grid = reconstruction_grid(images, recons, ncol=self.grid_columns)
                caption = (
                    f"epoch {epoch}: originals (rows 1, 3, ...) above their reconstructions "
                    f"(rows 2, 4, ...); {len(images)} fixed validation images, classes round-robin"
                )
                payload[keys.VAL_RECONSTRUCTIONS] = wandb.Image(grid, caption=caption)
                self._logged["recon"].add(epoch)
                self.timings["val_reconstructions"] = time.perf_counter() - start
            if tsne:
                start = time.perf_counter()
                loader = trainer.datamodule.val_dataloader()
                z, meta = collect_latents(module.net, loader, module.device)
                table = tsne_table(tsne_2d(z, self.selection_seed), meta)
                title = f"t-SNE of {len(table)} validation latents (epoch {epoch})"
                payload[keys.VAL_LATENT_TSNE] = wandb.Plotly(
                    tsne_figure(table, "category", title=title)
                )
                payload[keys.VAL_LATENT_TSNE_TABLE] = wandb.Table(
                    dataframe=table[["x", "y", "category", "path"]]
                )
                fig = static.tsne_scatter(
                    table, f"t-SNE de los {len(table)} latentes de validación (época {epoch})"
                )
                payload[keys.VAL_LATENT_TSNE_IMAGE] = static.wandb_image(fig)
                self._logged["tsne"].add(epoch)
                self.timings["val_latent_tsne"] = time.perf_counter() - start
        run.log(payload)

    def _selected_val_images(self, trainer: L.Trainer) -> Tensor:
        """[n,3,H,W] the fixed validation selection, gathered once from the val loader."""
        if self._val_images is None:
            rows = select_val(trainer.datamodule.table("val"), self.n_images, self.selection_seed)
            found: dict[int, Tensor] = {}
            for batch in trainer.datamodule.val_dataloader():
                for i, row in enumerate(batch["index"].tolist()):
                    if row in rows:
                        found[row] = batch["image"][i].clone()
            self._val_images = torch.stack([found[r] for r in rows])
        return self._val_images

    # ---- test media: read from the test step's predictions, never re-running the model -------
    @never_fatal
    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._test_rows, self._test_picked = [], {}
        # Every rank picks: under DDP each holds part of the selection, gathered at the end.
        if has_wandb_logger(trainer) and trainer.datamodule is not None:
            table = trainer.datamodule.table("test")
            self._test_rows = select_test(table, self.n_images, self.selection_seed)

    @never_fatal
    def on_test_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: dict[str, Any],
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Keep the picked images' panels from this batch's predictions (`outputs`)."""
        for i, row in enumerate(batch["index"].tolist()):
            if row in self._test_rows:
                self._test_picked[row] = tuple(
                    t[i].detach().float().cpu()
                    for t in (batch["image"], outputs["recon"], outputs["map"], batch["mask"])
                )

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # A collective before anything that may fail or return early on one rank only.
        picked = {}
        if has_wandb_logger(trainer):
            for part in gather_objects(self._test_picked):
                picked |= part
        self._test_picked = {}
        self._log_test_media(trainer, pl_module, picked)

    @never_fatal
    def _log_test_media(
        self, trainer: L.Trainer, module: L.LightningModule, picked: dict[int, tuple]
    ) -> None:
        run = wandb_run(trainer)
        predictions: TestPredictions | None = module.predictions
        if run is None or predictions is None:
            return
        import wandb

        scores = predictions.scores
        start = time.perf_counter()
        payload: dict[str, Any] = {
            keys.TEST_SCORES: wandb.Table(dataframe=scores.reset_index(drop=True))
        }
        errors = scores.assign(**{self.loss: loss_error(scores, self.loss, self.loss_alpha)})
        for category, fig in error_histograms(errors, column=self.loss).items():
            payload[f"{keys.TEST_ERROR_HISTOGRAMS}/{category}"] = wandb.Plotly(fig)
        for category, fig in error_histograms(scores).items():
            payload[f"{keys.TEST_SCORE_HISTOGRAMS}/{category}"] = wandb.Plotly(fig)
            image = static.wandb_image(static.defect_histograms(scores, category))
            payload[f"{keys.TEST_SCORE_HISTOGRAM_IMAGES}/{category}"] = image
        self.timings["test_tables"] = time.perf_counter() - start
        if picked:
            start = time.perf_counter()
            payload[keys.TEST_RECONSTRUCTIONS] = self._test_strips(predictions, picked)
            self.timings["test_reconstructions"] = time.perf_counter() - start
        if self.tsne_test and len(predictions.z):
            start = time.perf_counter()
            table = tsne_table(tsne_2d(predictions.z.numpy(), self.selection_seed), scores)
            title = f"t-SNE of {len(table)} test latents: colour good/defective, symbol class"
            fig = tsne_figure(table, color="status", symbol="category", title=title)
            payload[keys.TEST_LATENT_TSNE] = wandb.Plotly(fig)
            self.timings["test_latent_tsne"] = time.perf_counter() - start
        run.log(payload)
        # Explicit summary keys: the analysis reads them, whatever Lightning logged before.
        for key, value in module.test_metrics.items():
            run.summary[key] = float(value)
        if trainer.ckpt_path:
            run.summary[CHECKPOINT_EVALUATED] = str(trainer.ckpt_path)
        log.info("W&B media timings (s): %s", {k: round(v, 2) for k, v in self.timings.items()})

    def _test_strips(self, predictions: TestPredictions, picked: dict[int, tuple]) -> list[Any]:
        """One captioned 1x4 strip (original | reconstruction | anomaly map | mask) per picked
        image; the caption gives the map's value range, from black to pale yellow."""
        import wandb

        # One colour scale for all strips (a high quantile of every test pixel), so a good
        # image looks dark next to a defective one instead of being stretched to full range.
        flat = predictions.maps.float().flatten()
        flat = flat[:: max(1, flat.numel() // 1_000_000)]
        vmax = float(torch.quantile(flat, 0.999)) or 1.0
        strips = []
        for row in [r for r in self._test_rows if r in picked]:
            image, recon, amap, mask = picked[row]
            if amap.shape[-2:] != image.shape[-2:]:
                amap = F.interpolate(amap[None], size=image.shape[-2:], mode="bilinear")[0]
            info = predictions.scores.loc[row]
            caption = (
                f"{info['category']} | {info['defect']} | score {info['score']:.4g} — "
                f"original, reconstruction, anomaly map (inferno colours, one scale for all "
                f"strips: 0 = black, {vmax / 2:.3g} = red, {vmax:.3g} and above = pale yellow), "
                "ground truth"
            )
            strip = anomaly_strip(image, recon, amap, mask, vmax)
            strips.append(wandb.Image(strip, caption=caption))
        return strips

    # ---- checkpoint -----------------------------------------------------------------------------
    @never_fatal
    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        run = wandb_run(trainer)
        checkpoint = trainer.checkpoint_callback
        best = getattr(checkpoint, "best_model_path", "") if checkpoint else ""
        if run is None or not best:
            return
        run.summary[CHECKPOINT_BEST] = best
        if not run.offline:  # offline runs keep the path only; an artifact would need uploading
            import wandb

            artifact = wandb.Artifact(f"model-{run.id}", type="model", metadata={"path": best})
            artifact.add_file(best, name="model.ckpt")
            run.log_artifact(artifact, aliases=["best", "latest"])
