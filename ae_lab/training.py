"""`train(cfg)`: instantiate the datamodule, the LightningModule, the callbacks, the logger and the
trainer from the Hydra config, fit, test, return the metrics. The command line around it (errors,
result file, summary) is `ae_lab.cli`; the checks before anything starts are `ae_lab.checks`."""

import math
import os
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import Logger, WandbLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from ae_lab.checks import check_run, check_settings, claim_output_dir
from ae_lab.config import flatten
from ae_lab.errors import AeLabError
from ae_lab.logger import SummaryWandbLogger
from ae_lab.module import AutoencoderModule


class RunInterrupted(Exception):
    """Ctrl-C (or SIGTERM) stopped the run in `stage` ("fit" or "test"); Lightning has shut down."""

    def __init__(self, stage: str, checkpoints: Path, best: str | None, sigterm: bool) -> None:
        super().__init__(f"interrupted during {stage}")
        self.stage, self.checkpoints, self.best, self.sigterm = stage, checkpoints, best, sigterm


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit (if `cfg.train`) and test (if `cfg.test`) one autoencoder; return every `train/...`,
    `val/...` and `test/...` metric as a float, the checkpoint and output paths and, with W&B,
    `wandb_dir`, `wandb_url` and `wandb_mode`."""
    check_settings(cfg)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    out_dir = output_dir(cfg)
    claim = claim_output_dir(out_dir)  # noqa: F841  (the folder is ours while the run lasts)
    datamodule = hydra.utils.instantiate(cfg.data)
    datamodule.prepare_data()  # the data on disk before the checks read it (fit's call: a no-op)
    module = build_module(cfg)
    check_run(cfg, module, datamodule)  # before any training, W&B run or compilation
    optimise(module, cfg.torch)
    logger = build_logger(cfg.get("logger"))
    callbacks = build_callbacks(cfg.callbacks, out_dir / "checkpoints")
    trainer = build_trainer(cfg.trainer, logger, list(callbacks.values()), out_dir)
    if logger is not None:
        logger.log_hyperparams(hyperparams(cfg, logger))
    stage, best, result, exit_code = "fit", None, {}, 1
    try:
        if cfg.train:
            trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.ckpt_path, weights_only=True)
            check_trained(trainer)
            # `trainer.test` resets callback_metrics: keep the last epoch's train/val values now.
            result = finite_floats(trainer.callback_metrics)
        best = best_checkpoint(callbacks)
        stage, tested = "test", (best or "last") if cfg.train else cfg.ckpt_path
        if cfg.test:
            tester = test_trainer(cfg, trainer, list(callbacks.values()))
            if tester is not None:
                (metrics,) = tester.test(
                    module, datamodule=datamodule, ckpt_path=tested, weights_only=True
                )
                result |= finite_floats(metrics)
                tested = tester.ckpt_path
        if isinstance(logger, SummaryWandbLogger):
            logger.log_checkpoints(best, tested if cfg.test else None)
        exit_code = 0
    except SystemExit as stop:  # Lightning's way out after Ctrl-C or SIGTERM
        if not trainer.interrupted:
            raise
        sigterm = isinstance(stop, SIGTERMException)
        raise RunInterrupted(stage, out_dir / "checkpoints", best, sigterm) from None
    finally:
        if isinstance(logger, WandbLogger) and trainer.is_global_zero:
            result |= finish_wandb(logger, exit_code)
    last = out_dir / "checkpoints" / "last.ckpt"
    paths = {"output_dir": str(out_dir), "best_checkpoint": best}
    return result | paths | {"last_checkpoint": str(last) if last.exists() else None}


def output_dir(cfg: DictConfig) -> Path:
    """`cfg.output_dir`, else the Hydra run folder, else (the compose API) outputs/<run_name>."""
    if cfg.get("output_dir"):
        return Path(cfg.output_dir)
    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    return Path("outputs") / str(cfg.run_name)


def build_module(cfg: DictConfig) -> AutoencoderModule:
    """`cfg.model` instantiated, with the whole run config in its checkpoints' hyper-parameters
    (`config`), so a checkpoint can say which data and settings it was trained with."""
    module = hydra.utils.instantiate(cfg.model)
    module.hparams["config"] = OmegaConf.to_container(cfg, resolve=True)
    return module


def optimise(module: AutoencoderModule, settings: DictConfig) -> None:
    """The `torch:` settings: threads, matmul precision, channels-last weights, compilation."""
    if settings.get("num_threads"):
        torch.set_num_threads(int(settings.num_threads))
    torch.set_float32_matmul_precision(settings.matmul_precision)
    if settings.channels_last:
        # NHWC weights make every conv (and its output) channels-last, which oneDNN runs faster
        # on CPU (bench/README.md, knobs); inputs are converted inside the first conv.
        module.net = module.net.to(memory_format=torch.channels_last)
    if settings.compile:
        compile_network(module.net)


def compile_network(net: torch.nn.Module, **options: Any) -> torch.nn.Module:
    """Compile `net`'s forward paths in place (`forward`, `forward_with_latent`, `encode`, and a
    VAE's `forward_with_kl`): `torch.compile(net)` would prefix every state-dict key with
    `_orig_mod.` and leave attribute calls such as `net.encode` to the eager module."""
    for name in ("forward", "forward_with_kl", "forward_with_latent", "encode"):
        if hasattr(net, name):
            setattr(net, name, torch.compile(getattr(net, name), **options))  # no weights
    return net


def build_logger(settings: DictConfig | None) -> Logger | None:
    """The W&B logger of `settings` (None for logger=none), online or offline, never a prompt."""
    if not settings or "_target_" not in settings:
        return None
    from ae_lab.wandb_mode import ensure_wandb_mode

    try:
        import wandb  # noqa: F401
    except ImportError as exc:
        raise AeLabError(
            f"logger=wandb needs the `wandb` package, which does not import here ({exc}). "
            "Install the project (`pip install -e .`), or run without W&B with logger=none."
        ) from exc
    ensure_wandb_mode()
    Path(settings.get("save_dir") or ".").mkdir(parents=True, exist_ok=True)
    return hydra.utils.instantiate(settings)


def build_callbacks(settings: DictConfig, checkpoints: Path) -> dict[str, Callback]:
    """Every callback of `conf/callbacks/` (a null entry is left out), by name; checkpoints
    without a `dirpath` of their own are written to `checkpoints`."""
    callbacks = {name: hydra.utils.instantiate(c) for name, c in settings.items() if c}
    for callback in callbacks.values():
        if isinstance(callback, ModelCheckpoint) and callback.dirpath is None:
            callback.dirpath = str(checkpoints)
    return callbacks


def best_checkpoint(callbacks: dict[str, Callback]) -> str | None:
    """The file of the `model_checkpoint` callback (the best by its monitor), if it saved one."""
    callback = callbacks.get("model_checkpoint")
    return getattr(callback, "best_model_path", None) or None


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to a temporary name and renames it, so that a full disk (or a kill
    while saving) leaves the previous complete file in place, never a truncated `*.ckpt`."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options=None) -> None:
        tmp = Path(f"{path}.tmp")
        try:
            super().save_checkpoint(checkpoint, tmp, storage_options)
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise AeLabError(
                f"Could not write the checkpoint {path} ({exc}). Free disk space (or write "
                "elsewhere with output_dir=PATH), then resume from the last complete checkpoint "
                "with ckpt_path=<its checkpoints folder>/last.ckpt."
            ) from exc


def build_trainer(
    settings: DictConfig, logger: Logger | None, callbacks: list[Callback], out_dir: Path, **kw
) -> L.Trainer:
    """The Lightning Trainer of `settings` (`cfg.trainer`); `kw` overrides them."""
    return hydra.utils.instantiate(
        settings,
        logger=logger if logger is not None else False,
        callbacks=callbacks,
        default_root_dir=str(out_dir),
        plugins=[AtomicCheckpointIO()],
        **kw,
    )


def check_trained(trainer: L.Trainer) -> None:
    """Refuse to report the test metrics of random weights."""
    if trainer.global_step == 0:
        raise AeLabError(
            f"No training step ran (trainer.max_epochs={trainer.max_epochs}, "
            f"trainer.max_steps={trainer.max_steps}, trainer.limit_train_batches="
            f"{trainer.limit_train_batches}), so the test metrics would be those of untrained "
            "random weights; none are reported. Set trainer.max_epochs >= 1, or evaluate a saved "
            "model with `train=false ckpt_path=PATH`."
        )


def test_trainer(
    cfg: DictConfig, trainer: L.Trainer, callbacks: list[Callback]
) -> L.Trainer | None:
    """The trainer that tests: `trainer` itself, or under DDP a one-device trainer on rank 0 (None
    on the other ranks), as Lightning recommends: each test image is scored once, so the metrics
    equal a single-process evaluation."""
    if trainer.world_size == 1:
        return trainer
    # Without the process group Lightning's collectives (e.g. around prepare_data) do not wait for
    # ranks that have left.
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    if not trainer.is_global_zero:
        return None
    one = {"devices": 1, "num_nodes": 1, "strategy": "auto", "sync_batchnorm": False}
    out_dir = Path(trainer.default_root_dir)
    return build_trainer(cfg.trainer, trainer.logger, callbacks, out_dir, **one)


def hyperparams(cfg: DictConfig, logger: Logger) -> dict[str, Any]:
    """The resolved config for `log_hyperparams`, nested (`{"model": {"name": ..}}`).

    In a run started by `wandb agent`, the sweep's values are already in the W&B config and locked:
    a group choice such as `model: unet` would make W&B drop the whole nested `model` section
    ("locked by 'sweep'"). Those sections are logged flattened instead (`model.name`, ...), which
    is also how W&B shows nested config; the sweep's own keys are left as the sweep set them.
    """
    params = OmegaConf.to_container(cfg, resolve=True)
    run = logger.experiment if isinstance(logger, WandbLogger) else None
    if not isinstance(getattr(run, "sweep_id", None), str):  # no sweep (or not rank zero)
        return params
    preset = run.config  # the sweep's values, before anything else is logged
    for key in [k for k in params if k in preset and isinstance(params[k], dict)]:
        params |= flatten(params.pop(key), key)
    return {k: v for k, v in params.items() if k not in preset}


def finish_wandb(logger: WandbLogger, exit_code: int) -> dict[str, Any]:
    """Close the W&B run (marked failed unless `exit_code` is 0); where it is and its mode."""
    run = logger.experiment
    url, mode = (None, "offline") if run.offline else (run.url, "online")
    where = {"wandb_dir": str(Path(run.dir).parent), "wandb_url": url, "wandb_mode": mode}
    run.finish(exit_code=exit_code)
    return where


def finite_floats(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if math.isfinite(v)}
