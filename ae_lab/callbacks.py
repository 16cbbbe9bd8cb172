"""The media callback: what a run shows in W&B (reconstructions, t-SNE maps of the latents, score
tables and histograms), which images it shows, from what the module's steps return."""

import functools
import logging
from collections.abc import Callable
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import WandbLogger
from sklearn.manifold import TSNE
from threadpoolctl import threadpool_limits

from ae_lab import figures, keys
from ae_lab.batch import Batch, Predictions
from ae_lab.errors import check_number
from ae_lab.images import anomaly_strip, reconstruction_grid

log = logging.getLogger(__name__)

EPOCH_AXIS_KEYS = (
    *keys.LOSS_CURVES,
    keys.VAL_RECONSTRUCTIONS,
    keys.VAL_LATENT_TSNE,
    keys.VAL_LATENT_TSNE_TABLE,
    keys.VAL_LATENT_TSNE_IMAGE,
)


# ---- which images the media show: fixed and seeded, the same every epoch and run -------------
def round_robin(table: pd.DataFrame, n: int, by: list[str], seed: int = 0) -> list[int]:
    """Up to `n` row labels of `table`, visiting the groups of `by[0]` in turn, and within each
    group the subgroups of `by[1]` in turn, and so on (e.g. class, then defect type).

    Rows are in a seeded random order inside their group; groups are visited in sorted order, so
    the result depends only on the table's content and `seed`.
    """
    rows = table.sample(frac=1, random_state=seed)
    # Innermost level first: a row's rank in its group's queue interleaves it with its siblings.
    for depth in range(len(by), 0, -1):
        rows = rows.assign(_rank=rows.groupby(by[:depth]).cumcount())
        rows = rows.sort_values([*by[: depth - 1], "_rank", by[depth - 1]], kind="stable")
    return list(rows.index[:n])


def select_test(table: pd.DataFrame, n: int, seed: int = 0) -> list[int]:
    """`n` test rows: half good (round-robin over classes), half defective (round-robin over
    classes, and within a class over its defect types); if one side runs short the other fills
    in. Ordered by class, good first, then defect type, so the W&B list reads class by class."""
    good, bad = table[table["label"] == 0], table[table["label"] == 1]
    n_bad = min(len(bad), n - min(len(good), n // 2))
    rows = round_robin(good, min(len(good), n - n_bad), ["category"], seed)
    rows += round_robin(bad, n_bad, ["category", "defect"], seed)
    ordered = table.loc[rows].sort_values(["category", "label", "defect"], kind="stable")
    return list(ordered.index)


# ---- t-SNE of the latent codes ---------------------------------------------------------------
def tsne_2d(z: np.ndarray, seed: int = 0) -> np.ndarray:
    """z [N, D] -> [N, 2] t-SNE coordinates (PCA init, fixed seed, so reruns give the same map).

    With fewer than 4 points t-SNE is undefined (perplexity must be >= 1 and < N): all at 0.
    """
    n = len(z)
    if n < 4:
        return np.zeros((n, 2))
    z = np.asarray(z, dtype=np.float64).reshape(n, -1)
    # Perplexity 30, or (N-1)/3 for small sets so that each point still has ~3x that many neighbours.
    perplexity = min(30.0, (n - 1) / 3.0)
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed)
    # One thread: sklearn's OpenMP gradient loop spin-waits, and next to a training process (or
    # parallel sweep jobs) more threads make it many times slower on busy cores.
    with threadpool_limits(limits=1):
        return tsne.fit_transform(z)


def tsne_table(coords: np.ndarray, meta: pd.DataFrame) -> pd.DataFrame:
    """Columns x, y plus the metadata (category, defect, label, path) — what the W&B table shows."""
    table = meta[["category", "defect", "label", "path"]].reset_index(drop=True)
    return table.assign(x=coords[:, 0].astype(float), y=coords[:, 1].astype(float))


# ---- the media callback ---------------------------------------------------------------------
def never_fatal(hook: Callable[..., None]) -> Callable[..., None]:
    """Media are extras: an error in a media hook is logged and the run (its checkpoints, its
    metrics) goes on, instead of Lightning aborting fit before `last.ckpt` is written."""

    @functools.wraps(hook)
    def guarded(self: Callback, *args: Any, **kwargs: Any) -> None:
        try:
            hook(self, *args, **kwargs)
        except Exception as exc:
            # exc_info: a bug in a media hook should still be visible
            name, kind = hook.__name__, type(exc).__name__
            log.warning("W&B media skipped: %s failed (%s: %s)", name, kind, exc, exc_info=True)

    return guarded


def wandb_run(trainer: L.Trainer) -> Any | None:
    """The W&B run of the trainer's WandbLogger on global rank zero, else None."""
    loggers = [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]
    return loggers[0].experiment if loggers and trainer.is_global_zero else None


def _collect(store: dict[str, Any], batch: Batch, out: Predictions, rows: list[int]) -> None:
    """Keep a batch's latents and metadata, and the picked rows' tensors on the CPU: image and
    reconstruction [3,S,S], then (test) the anomaly map and the ground-truth mask [1,S,S]."""
    index = batch.index.tolist()
    store["z"].append(out.z.detach().flatten(1).float().cpu())
    meta = {"path": batch.path, "category": batch.category, "defect": batch.defect}
    store["meta"].append(pd.DataFrame(meta | {"label": batch.label.tolist()}, index=index))
    tensors = [batch.image, out.recon]
    if out.anomaly_map is not None:
        tensors += [out.anomaly_map, batch.mask]
    for i, row in enumerate(index):
        if row in rows:
            store["picked"][row] = [t[i].detach().float().cpu() for t in tensors]


class WandbMediaCallback(Callback):
    """Logs what each run shows in W&B, on rank zero, at epoch ends only, from what the module's
    validation and test steps return (never re-running the model).

    Args:
        every_n_epochs: `val/reconstructions` every n epochs (0: only at the end of training).
        tsne_every_n_epochs: `val/latent_tsne` every n epochs (0: only at the end of training).
        n_images: how many validation / test images the reconstruction media show.
        tsne_test: also embed the test latents (`test/latent_tsne`), coloured good vs defective.
        selection_seed: seed of the fixed image selection; the same for every run on purpose.
        grid_columns: originals (and reconstructions) per grid row in `val/reconstructions`.
    """

    def __init__(
        self,
        every_n_epochs: int = 5,
        tsne_every_n_epochs: int = 0,
        n_images: int = 16,
        tsne_test: bool = True,
        selection_seed: int = 0,
        grid_columns: int = 8,
    ) -> None:
        self.every_n_epochs, self.tsne_every_n_epochs = every_n_epochs, tsne_every_n_epochs
        self.n_images, self.tsne_test = n_images, tsne_test
        self.selection_seed, self.grid_columns = selection_seed, grid_columns
        for name in ("every_n_epochs", "tsne_every_n_epochs", "selection_seed"):
            check_number(WandbMediaCallback, name, getattr(self, name), 0, 10_000, integer=True)
        for name in ("n_images", "grid_columns"):
            check_number(WandbMediaCallback, name, getattr(self, name), 1, 10_000, integer=True)
        self._rows: dict[str, list[int]] = {}  # "val"/"test" -> the picked rows, in display order
        self._store: dict[str, dict[str, Any]] = {}  # stage -> what its steps returned
        self._losses: list[tuple[int, float, float]] = []  # (epoch, train/loss, val/loss)
        self._last_epoch = -1
        self._last_logged: set[str] = set()  # the val media logged at the last epoch

    @never_fatal
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        run = wandb_run(trainer)
        if run is None:
            return
        # Explicit names win over Lightning's `*` glob (x-axis trainer/global_step), so loss
        # curves and val media use `epoch` and runs with different batch counts line up.
        run.define_metric(keys.EPOCH)
        for key in EPOCH_AXIS_KEYS:
            run.define_metric(key, step_metric=keys.EPOCH)
        if stage == "test":
            table = trainer.datamodule.table("test")
            self._rows["test"] = select_test(table, self.n_images, self.selection_seed)
            return
        table = trainer.datamodule.table("val")  # every class round-robin
        self._rows["val"] = round_robin(table, self.n_images, ["category"], self.selection_seed)
        if table.empty:  # data.val_fraction=0
            log.warning("No validation images (data.val_fraction=0): validation media skipped.")

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._store["val"] = {"z": [], "meta": [], "picked": {}}

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._store["test"] = {"z": [], "meta": [], "picked": {}, "scores": []}

    @never_fatal
    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dl_idx=0):
        if wandb_run(trainer) is not None and not trainer.sanity_checking:
            _collect(self._store["val"], batch, outputs, self._rows.get("val", []))

    @never_fatal
    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dl_idx=0):
        if wandb_run(trainer) is not None:
            _collect(self._store["test"], batch, outputs, self._rows.get("test", []))
            self._store["test"]["scores"].append(outputs.scores)

    def _picked(self, stage: str) -> list[int]:
        """The picked rows a stage's steps returned, in display order."""
        return [r for r in self._rows[stage] if r in self._store[stage]["picked"]]

    def _tsne_table(self, stage: str) -> pd.DataFrame:
        """The `tsne_table` of a stage's latents."""
        store = self._store[stage]
        coords = tsne_2d(torch.cat(store["z"]).numpy(), self.selection_seed)
        return tsne_table(coords, pd.concat(store["meta"]))

    # ---- validation media -----------------------------------------------------------------------
    @never_fatal
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch, metrics = trainer.current_epoch, trainer.callback_metrics
        self._last_epoch = epoch
        if keys.TRAIN_LOSS in metrics and keys.VAL_LOSS in metrics:  # validation ran before
            losses = (float(metrics[keys.TRAIN_LOSS]), float(metrics[keys.VAL_LOSS]))
            self._losses.append((epoch, *losses))
        every = {"recon": self.every_n_epochs, "tsne": self.tsne_every_n_epochs}
        self._last_logged = {media for media, n in every.items() if n > 0 and (epoch + 1) % n == 0}
        self._log_val_media(trainer, epoch, self._last_logged)

    @never_fatal
    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._log_val_media(trainer, self._last_epoch, {"recon", "tsne"} - self._last_logged)
        run = wandb_run(trainer)
        if run is not None and self._losses:
            import wandb

            # `train/loss` and `val/loss` against epoch in one chart (a line series): the
            # workspace otherwise gives every key its own panel.
            epochs, train, val = (list(x) for x in zip(*self._losses, strict=True))
            chart = wandb.plot.line_series(
                xs=epochs,
                ys=[train, val],
                keys=[keys.TRAIN_LOSS, keys.VAL_LOSS],
                title="train/loss and val/loss",
                xname=keys.EPOCH,
            )
            run.log({keys.TRAIN_VAL_LOSS: chart})

    def _log_val_media(self, trainer: L.Trainer, epoch: int, media: set[str]) -> None:
        """`recon` and/or `tsne`: the validation media of `epoch`, from its validation steps."""
        run, store = wandb_run(trainer), self._store.get("val")
        if run is None or not store or not store["z"] or not media:
            return
        import wandb

        payload: dict[str, Any] = {keys.EPOCH: epoch}
        if "recon" in media:
            rows = self._picked("val")
            images, recons = (torch.stack([store["picked"][r][i] for r in rows]) for i in (0, 1))
            caption = (
                f"epoch {epoch}: originals (rows 1, 3, ...) above their reconstructions "
                f"(rows 2, 4, ...); {len(rows)} fixed validation images, classes round-robin"
            )
            grid = reconstruction_grid(images, recons, ncol=self.grid_columns)
            payload[keys.VAL_RECONSTRUCTIONS] = wandb.Image(grid, caption=caption)
        if "tsne" in media:
            table = self._tsne_table("val")
            title = f"t-SNE of {len(table)} validation latents (epoch {epoch})"
            payload[keys.VAL_LATENT_TSNE] = wandb.Plotly(figures.tsne_figure(table, title=title))
            columns = ["x", "y", "category", "path"]
            payload[keys.VAL_LATENT_TSNE_TABLE] = wandb.Table(dataframe=table[columns])
            title = f"t-SNE de los {len(table)} latentes de validación (época {epoch})"
            image = figures.wandb_image(figures.tsne_scatter(table, title))
            payload[keys.VAL_LATENT_TSNE_IMAGE] = image
        run.log(payload)

    # ---- test media -----------------------------------------------------------------------------
    @never_fatal
    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        run, store = wandb_run(trainer), self._store.get("test")
        if run is None or not store or not store["scores"]:
            return
        import wandb

        scores = pd.concat(store["scores"]).sort_index()
        score_table = wandb.Table(dataframe=scores.reset_index(drop=True))
        payload: dict[str, Any] = {keys.TEST_SCORES: score_table}
        # The reconstruction error in the run's own loss, then the anomaly score.
        for category, fig in figures.error_histograms(scores, column="loss").items():
            payload[f"{keys.TEST_ERROR_HISTOGRAMS}/{category}"] = wandb.Plotly(fig)
        for category, fig in figures.error_histograms(scores).items():
            payload[f"{keys.TEST_SCORE_HISTOGRAMS}/{category}"] = wandb.Plotly(fig)
            image = figures.wandb_image(figures.defect_histograms(scores, category))
            payload[f"{keys.TEST_SCORE_HISTOGRAM_IMAGES}/{category}"] = image
        if store["picked"]:
            payload[keys.TEST_RECONSTRUCTIONS] = self._test_strips(scores)
        if self.tsne_test:
            table = self._tsne_table("test")
            title = f"t-SNE of {len(table)} test latents: colour good/defective, symbol class"
            fig = figures.tsne_figure(table, color="status", symbol="category", title=title)
            payload[keys.TEST_LATENT_TSNE] = wandb.Plotly(fig)
        run.log(payload)

    def _test_strips(self, scores: pd.DataFrame) -> list[Any]:
        """One captioned 1x4 strip (original | reconstruction | anomaly map | mask) per picked
        image; the caption gives the map's value range, from black to pale yellow."""
        import wandb

        picked = self._store["test"]["picked"]
        # One colour scale for all strips (a high quantile of the picked maps' pixels), so a
        # good image looks dark next to a defective one instead of being stretched to full range.
        maps = torch.stack([anomaly_map for _, _, anomaly_map, _ in picked.values()])
        vmax = float(torch.quantile(maps, 0.999)) or 1.0
        strips = []
        for row in self._picked("test"):
            info = scores.loc[row]
            caption = (
                f"{info['category']} | {info['defect']} | score {info['score']:.4g} — "
                f"original, reconstruction, anomaly map (inferno colours, one scale for all "
                f"strips: 0 = black, {vmax / 2:.3g} = red, {vmax:.3g} and above = pale yellow), "
                "ground truth"
            )
            strips.append(wandb.Image(anomaly_strip(*picked[row], vmax), caption=caption))
        return strips
