"""What a run sends to W&B: online or offline, the logger (test metrics to the run summary), which
images the media show, t-SNE maps of the latents, and the media callback."""

import functools
import logging
import netrc
import os
import socket
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlparse

import lightning as L
import numpy as np
import pandas as pd
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_only
from sklearn.manifold import TSNE
from threadpoolctl import threadpool_limits
from torch import Tensor

from ae_lab import keys
from ae_lab.errors import AeLabError
from ae_lab.figures import (
    defect_histograms,
    error_histograms,
    tsne_figure,
    tsne_scatter,
    wandb_image,
)
from ae_lab.images import anomaly_strip, reconstruction_grid

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


# ---- online or offline, never a login prompt -----------------------------------------------------
def ensure_wandb_mode() -> str:
    """The W&B mode to use: an explicit `WANDB_MODE` (offline, disabled) is respected; otherwise
    offline, with one line saying why, when there are no credentials or W&B's server does not
    answer within 3 s (instead of a login prompt or a 90 s hang); `WANDB_MODE=online` then fails
    with the fix."""
    mode = os.environ.get("WANDB_MODE")
    if mode and mode != "online":
        return mode
    url = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai"))
    host, port = url.hostname or "", url.port or (80 if url.scheme == "http" else 443)
    try:  # an API key in the environment or in the netrc file that `wandb login` writes
        netrc_file = netrc.netrc(os.environ.get("NETRC"))
        has_key = bool(os.environ.get("WANDB_API_KEY") or netrc_file.authenticators(host))
    except (OSError, netrc.NetrcParseError):
        has_key = bool(os.environ.get("WANDB_API_KEY"))
    if not has_key:
        why = "no W&B credentials found"
    else:
        try:
            socket.create_connection((host, port), timeout=3).close()
            return "online"
        except OSError as exc:
            why = f"W&B credentials found but {host} does not answer ({exc})"
    if mode == "online":
        raise AeLabError(
            f"WANDB_MODE=online but {why}: run `wandb login` once (and check the network), or log "
            "offline with WANDB_MODE=offline, or run without W&B with logger=none."
        )
    os.environ["WANDB_MODE"] = "offline"
    print(
        f"[ae-lab] {why}: logging offline under ./wandb (or $WANDB_DIR/wandb). Upload later with "
        "`wandb sync --sync-all` after `wandb login`."
    )
    return "offline"


class SummaryWandbLogger(WandbLogger):
    """`WandbLogger` whose `test/...` scalars go to `run.summary`: one value per run belongs in the
    runs table and bar charts, not in ~40 one-point line panels of the history."""

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        test = {k: float(v) for k, v in metrics.items() if k.startswith("test/")}
        if test:
            self.experiment.summary.update(test)
        # Lightning adds `epoch` to the test logs; alone it would still make a history row.
        rest = {k: v for k, v in metrics.items() if k not in test and not (test and k == "epoch")}
        if rest:
            super().log_metrics(rest, step)


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
    # parallel sweep jobs) more threads made 500 points take 80 s instead of 6 s on 2 busy cores.
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
            log.warning(
                "W&B media skipped: %s failed (%s: %s)", hook.__name__, type(exc).__name__, exc,
                exc_info=True,  # a bug in a media hook should still be visible
            )  # fmt: skip

    return guarded


def wandb_run(trainer: L.Trainer) -> Any | None:
    """The W&B run of the trainer's WandbLogger on global rank zero, else None."""
    loggers = [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]
    return loggers[0].experiment if loggers and trainer.is_global_zero else None


def _collect(store: dict[str, Any], batch: dict[str, Any], outputs: dict[str, Any], rows: list):
    """Keep a batch's latents and metadata, and the picked rows' image panels (on the CPU)."""
    index = batch["index"].tolist()
    store["z"].append(outputs["z"].detach().flatten(1).float().cpu())
    meta = {k: list(batch[k]) for k in ("path", "category", "defect")}
    store["meta"].append(pd.DataFrame(meta | {"label": batch["label"].tolist()}, index=index))
    panels = [outputs["recon"], outputs.get("map"), batch.get("mask")]
    for i, row in enumerate(index):
        if row in rows:
            store["picked"][row] = [batch["image"][i].float().cpu()] + [
                t[i].detach().float().cpu() for t in panels if t is not None
            ]


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
        self.seed, self.grid_columns = selection_seed, grid_columns
        self._rows: dict[str, list[int]] = {}  # "val"/"test" -> the picked rows, in display order
        self._store: dict[str, dict[str, Any]] = {}  # stage -> what its steps returned
        self._logged: set[tuple[str, int]] = set()  # (media, epoch)
        self._losses: list[tuple[int, float, float]] = []  # (epoch, train/loss, val/loss)
        self._last_epoch = -1

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
        split = "test" if stage == "test" else "val"
        table = trainer.datamodule.table(split)
        if split == "test":
            self._rows[split] = select_test(table, self.n_images, self.seed)
        else:  # every class round-robin
            self._rows[split] = round_robin(table, self.n_images, ["category"], self.seed)
        if split == "val" and table.empty:  # data.val_fraction=0
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
            self._store["test"]["scores"].append(outputs["scores"])

    # ---- validation media -----------------------------------------------------------------------
    @never_fatal
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch, metrics = trainer.current_epoch, trainer.callback_metrics
        self._last_epoch = epoch
        if keys.TRAIN_LOSS in metrics and keys.VAL_LOSS in metrics:  # validation ran before
            self._losses.append(
                (epoch, float(metrics[keys.TRAIN_LOSS]), float(metrics[keys.VAL_LOSS]))
            )
        recon = self.every_n_epochs > 0 and (epoch + 1) % self.every_n_epochs == 0
        tsne = self.tsne_every_n_epochs > 0 and (epoch + 1) % self.tsne_every_n_epochs == 0
        self._log_val_media(trainer, epoch, recon, tsne)

    @never_fatal
    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch = self._last_epoch
        recon, tsne = ("recon", epoch) not in self._logged, ("tsne", epoch) not in self._logged
        self._log_val_media(trainer, epoch, recon, tsne)
        run = wandb_run(trainer)
        if run is not None and self._losses:
            import wandb

            # `train/loss` and `val/loss` against epoch in one chart (a line series): the
            # workspace otherwise gives every key its own panel.
            epochs, train, val = (list(x) for x in zip(*self._losses, strict=True))
            chart = wandb.plot.line_series(
                xs=epochs, ys=[train, val], keys=[keys.TRAIN_LOSS, keys.VAL_LOSS],
                title="train/loss and val/loss", xname=keys.EPOCH,
            )  # fmt: skip
            run.log({keys.TRAIN_VAL_LOSS: chart})

    def _log_val_media(self, trainer: L.Trainer, epoch: int, recon: bool, tsne: bool) -> None:
        run, store = wandb_run(trainer), self._store.get("val")
        if run is None or not store or not store["z"] or not (recon or tsne):
            return
        import wandb

        payload: dict[str, Any] = {keys.EPOCH: epoch}
        if recon:
            rows = [r for r in self._rows["val"] if r in store["picked"]]
            images = torch.stack([store["picked"][r][0] for r in rows])
            recons = torch.stack([store["picked"][r][1] for r in rows])
            caption = (
                f"epoch {epoch}: originals (rows 1, 3, ...) above their reconstructions "
                f"(rows 2, 4, ...); {len(rows)} fixed validation images, classes round-robin"
            )
            grid = reconstruction_grid(images, recons, ncol=self.grid_columns)
            payload[keys.VAL_RECONSTRUCTIONS] = wandb.Image(grid, caption=caption)
            self._logged.add(("recon", epoch))
        if tsne:
            meta = pd.concat(store["meta"])
            table = tsne_table(tsne_2d(torch.cat(store["z"]).numpy(), self.seed), meta)
            title = f"t-SNE of {len(table)} validation latents (epoch {epoch})"
            payload[keys.VAL_LATENT_TSNE] = wandb.Plotly(
                tsne_figure(table, "category", title=title)
            )
            columns = ["x", "y", "category", "path"]
            payload[keys.VAL_LATENT_TSNE_TABLE] = wandb.Table(dataframe=table[columns])
            title = f"t-SNE de los {len(table)} latentes de validación (época {epoch})"
            payload[keys.VAL_LATENT_TSNE_IMAGE] = wandb_image(tsne_scatter(table, title))
            self._logged.add(("tsne", epoch))
        run.log(payload)

    # ---- test media -----------------------------------------------------------------------------
    @never_fatal
    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        run, store = wandb_run(trainer), self._store.get("test")
        if run is None or not store or not store.get("scores"):
            return
        import wandb

        scores = pd.concat(store["scores"]).sort_index()
        payload: dict[str, Any] = {
            keys.TEST_SCORES: wandb.Table(dataframe=scores.reset_index(drop=True))
        }
        # The reconstruction error in the run's own loss, then the anomaly score.
        for category, fig in error_histograms(scores, column="loss").items():
            payload[f"{keys.TEST_ERROR_HISTOGRAMS}/{category}"] = wandb.Plotly(fig)
        for category, fig in error_histograms(scores).items():
            payload[f"{keys.TEST_SCORE_HISTOGRAMS}/{category}"] = wandb.Plotly(fig)
            image = wandb_image(defect_histograms(scores, category))
            payload[f"{keys.TEST_SCORE_HISTOGRAM_IMAGES}/{category}"] = image
        if store["picked"]:
            rows = [r for r in self._rows["test"] if r in store["picked"]]
            payload[keys.TEST_RECONSTRUCTIONS] = self._test_strips(scores, store["picked"], rows)
        if self.tsne_test:
            meta = pd.concat(store["meta"])
            table = tsne_table(tsne_2d(torch.cat(store["z"]).numpy(), self.seed), meta)
            title = f"t-SNE of {len(table)} test latents: colour good/defective, symbol class"
            fig = tsne_figure(table, color="status", symbol="category", title=title)
            payload[keys.TEST_LATENT_TSNE] = wandb.Plotly(fig)
        run.log(payload)
        if trainer.ckpt_path:
            run.summary[CHECKPOINT_EVALUATED] = str(trainer.ckpt_path)

    def _test_strips(
        self, scores: pd.DataFrame, picked: dict[int, list[Tensor]], rows: list[int]
    ) -> list[Any]:
        """One captioned 1x4 strip (original | reconstruction | anomaly map | mask) per picked
        image; the caption gives the map's value range, from black to pale yellow."""
        import wandb

        # One colour scale for all strips (a high quantile of the picked maps' pixels), so a
        # good image looks dark next to a defective one instead of being stretched to full range.
        vmax = float(torch.quantile(torch.stack([p[2] for p in picked.values()]), 0.999)) or 1.0
        strips = []
        for row in rows:
            image, recon, amap, mask = picked[row]
            info = scores.loc[row]
            caption = (
                f"{info['category']} | {info['defect']} | score {info['score']:.4g} — "
                f"original, reconstruction, anomaly map (inferno colours, one scale for all "
                f"strips: 0 = black, {vmax / 2:.3g} = red, {vmax:.3g} and above = pale yellow), "
                "ground truth"
            )
            strips.append(
                wandb.Image(anomaly_strip(image, recon, amap, mask, vmax), caption=caption)
            )
        return strips

    @never_fatal
    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        run = wandb_run(trainer)
        best = getattr(trainer.checkpoint_callback, "best_model_path", "")
        if run is None or not best:
            return
        run.summary[CHECKPOINT_BEST] = best
        if not run.offline:  # offline runs keep the path only; an artifact would need uploading
            import wandb

            artifact = wandb.Artifact(f"model-{run.id}", type="model", metadata={"path": best})
            artifact.add_file(best, name="model.ckpt")
            run.log_artifact(artifact, aliases=["best", "latest"])
