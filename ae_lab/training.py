"""`train(cfg)`: build everything from the Hydra config, fit, test, return the final metrics."""

import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from hydra.errors import InstantiationException
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import Logger, WandbLogger
from omegaconf import DictConfig, OmegaConf

from ae_lab.checkpoints import check_checkpoint, resume_command
from ae_lab.data.datamodule import MVTecDataModule
from ae_lab.errors import AeLabError
from ae_lab.flatten import flatten
from ae_lab.module import AutoencoderModule, wants_total_steps
from ae_lab.scoring import ScoringConfig
from ae_lab.tracking.mode import ensure_wandb_mode


def resolve_output_dir(cfg: DictConfig) -> Path:
    """`cfg.output_dir`, else the Hydra run folder, else `outputs/<run_name>` (compose API, tests)."""
    if cfg.get("output_dir"):
        return Path(cfg.output_dir)
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    return Path("outputs") / str(cfg.run_name)


def configure_torch(cfg: DictConfig) -> None:
    torch_cfg = cfg.get("torch") or {}
    if torch_cfg.get("num_threads"):
        torch.set_num_threads(int(torch_cfg.num_threads))
    torch.set_float32_matmul_precision(torch_cfg.get("matmul_precision", "high"))


def build_logger(cfg: DictConfig) -> Logger | None:
    if not cfg.get("logger") or "_target_" not in cfg.logger:
        return None
    ensure_wandb_mode()
    Path(cfg.logger.get("save_dir") or ".").mkdir(parents=True, exist_ok=True)
    return hydra.utils.instantiate(cfg.logger)


def build_callbacks(cfg: DictConfig, ckpt_dir: Path, logger: Logger | None) -> list[Callback]:
    callbacks: list[Callback] = [
        # `last.ckpt` is what resuming and the non-finite-loss guard rely on.
        ModelCheckpoint(
            dirpath=ckpt_dir,
            filename="epoch{epoch:03d}-val_loss{val/loss:.5f}",
            monitor="val/loss",
            mode="min",
            save_last=True,
            auto_insert_metric_name=False,
        ),
    ]
    if cfg.get("scheduler") and logger is not None:
        callbacks.append(LearningRateMonitor(logging_interval="epoch"))
    if isinstance(logger, WandbLogger):
        from ae_lab.tracking import WandbMediaCallback

        loss = {"loss": cfg.loss.name, "loss_alpha": cfg.loss.fn.get("alpha", 0.84)}
        callbacks.append(WandbMediaCallback(**cfg.get("media", {}), **loss))
    return callbacks


def _checked_factories(cfg: DictConfig) -> tuple[Any, Any]:
    """The partial optimizer and scheduler, tried once on a dummy parameter so that a bad value
    (`optimizer.lr=-1`, `optimizer.lr=fast`) fails now, naming its key, not inside fit."""
    optimizer_factory = hydra.utils.instantiate(cfg.optimizer)
    with _rejected_settings(cfg, "optimizer", "e.g. optimizer.lr=1e-3 (a positive number)"):
        optimizer = optimizer_factory(params=[torch.nn.Parameter(torch.zeros(1))])
    if not cfg.get("scheduler"):
        return optimizer_factory, None
    scheduler_factory = hydra.utils.instantiate(cfg.scheduler)
    with _rejected_settings(cfg, "scheduler", "scheduler.<name>=..."):
        trial = {"total_steps": 10} if wants_total_steps(scheduler_factory) else {}
        scheduler_factory(optimizer=optimizer, **trial)
    return optimizer_factory, scheduler_factory


@contextmanager
def _rejected_settings(cfg: DictConfig, key: str, example: str) -> Iterator[None]:
    try:
        yield
    except (TypeError, ValueError) as exc:
        section = cfg[key]
        values = ", ".join(f"{key}.{k}={v!r}" for k, v in section.items() if not k.startswith("_"))
        raise AeLabError(
            f"{section.get('_target_', key)} rejects the `{key}` settings ({values}): {exc}. "
            f"Fix the value on the command line, {example}."
        ) from exc


def build_module(cfg: DictConfig) -> AutoencoderModule:
    scoring = ScoringConfig.from_dict(OmegaConf.to_container(cfg.scoring, resolve=True))
    optimizer, scheduler = _checked_factories(cfg)
    module = AutoencoderModule(
        net=hydra.utils.instantiate(cfg.model.net),
        loss=hydra.utils.instantiate(cfg.loss.fn),
        optimizer=optimizer,
        scheduler=scheduler,
        kl_beta=float(cfg.model.get("kl_beta", 0.0)),
        scoring=scoring,
    )
    # Stored in every checkpoint (Lightning's `hyper_parameters`), so a checkpoint can say which
    # model and data settings it was trained with; `logger=False`: the run logs its config itself.
    module.save_hyperparameters({"config": OmegaConf.to_container(cfg, resolve=True)}, logger=False)
    torch_cfg = cfg.get("torch") or {}
    if torch_cfg.get("channels_last"):
        # NHWC weights make every conv (and its output) channels-last: 1.6x faster training on
        # CPU with oneDNN (bench/README.md); inputs are converted inside the first conv.
        module.net = module.net.to(memory_format=torch.channels_last)
    if torch_cfg.get("compile"):
        compile_network(module.net)
    return module


COMPILED_METHODS = ("forward", "forward_with_kl", "encode")


def compile_network(net: torch.nn.Module, **options: Any) -> torch.nn.Module:
    """Compile `net`'s `forward`, `forward_with_kl` (VAE training) and `encode` (latents) in place.

    In place, not `torch.compile(net)`: that wrapper prefixes every state-dict key with
    `_orig_mod.`, so its checkpoints did not load with compile off, and attribute calls such as
    `net.forward_with_kl` or `net.encode` went past it to the eager module.
    """
    for name in COMPILED_METHODS:
        method = getattr(net, name, None)
        if method is not None:
            setattr(net, name, torch.compile(method, **options))  # instance attribute, no weights
    return net


def build_trainer(
    cfg: DictConfig, logger: Logger | None, callbacks: list[Callback], out_dir: Path
) -> L.Trainer:
    """The Lightning Trainer of `cfg.trainer`; settings this machine cannot run name their key."""
    accelerator = str(cfg.trainer.get("accelerator", "auto"))
    try:
        return hydra.utils.instantiate(
            cfg.trainer,
            logger=logger if logger is not None else False,
            callbacks=callbacks,
            default_root_dir=str(out_dir),
        )
    except InstantiationException as exc:
        if not isinstance(exc.__cause__, MisconfigurationException):
            raise
        no_gpu = accelerator in ("gpu", "cuda") and not torch.cuda.is_available()
        hint = (
            f"trainer.accelerator={accelerator} (trainer=gpu) needs a GPU, and PyTorch sees none on "
            "this machine. Run on the CPU with `trainer=default` (or trainer.accelerator=auto)."
            if no_gpu
            else "Check trainer.accelerator, trainer.devices, trainer.strategy and "
            "trainer.precision, or use `trainer=default`."
        )
        raise AeLabError(
            f"Lightning rejects the trainer settings: {exc.__cause__}. {hint}"
        ) from exc


def hyperparams(cfg: DictConfig, logger: Logger) -> dict[str, Any]:
    """The resolved config for `log_hyperparams`, nested (`model.name` is `{"model": {"name": ..}}`).

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


def _finite_floats(metrics: dict[str, Any]) -> dict[str, float]:
    out = {}
    for key, value in metrics.items():
        value = float(value.item() if isinstance(value, torch.Tensor) else value)
        if math.isfinite(value):
            out[key] = value
    return out


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit (if `cfg.train`) and test (if `cfg.test`) one autoencoder; return final metrics and paths.

    The returned dict holds every `train/...`, `val/...` and `test/...` metric as a float, plus
    `best_checkpoint`, `last_checkpoint`, `output_dir` and (with W&B) `wandb_dir`, `wandb_url`.
    """
    if not cfg.get("train") and not cfg.get("ckpt_path"):
        raise AeLabError(
            "`train=false` evaluates a saved model, so it needs `ckpt_path=PATH/TO/model.ckpt` "
            "(for example the `last.ckpt` in a previous run's checkpoints folder)."
        )
    if cfg.get("ckpt_path") and not Path(cfg.ckpt_path).is_file():
        raise AeLabError(
            f"Checkpoint not found: ckpt_path={cfg.ckpt_path}. Point it to an existing .ckpt file, "
            "e.g. outputs/<date>/<time>-<run>/checkpoints/last.ckpt."
        )
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    configure_torch(cfg)
    out_dir = resolve_output_dir(cfg)
    ckpt_dir = out_dir / "checkpoints"

    datamodule: L.LightningDataModule = hydra.utils.instantiate(cfg.data)
    module = build_module(cfg)
    if cfg.get("ckpt_path"):  # before any training or W&B run: a wrong file fails now, clearly
        check_checkpoint(cfg.ckpt_path, module, OmegaConf.to_container(cfg, resolve=True))
    test_set = datamodule.table("test") if isinstance(datamodule, MVTecDataModule) else None
    if cfg.get("test") and test_set is not None and test_set.empty:  # fail before training
        raise AeLabError(datamodule.no_test_images_message())
    logger = build_logger(cfg)
    trainer = build_trainer(cfg, logger, build_callbacks(cfg, ckpt_dir, logger), out_dir)
    if logger is not None:
        logger.log_hyperparams(hyperparams(cfg, logger))

    exit_code = 1
    wandb_info: dict[str, Any] = {}
    fit_metrics: dict[str, float] = {}
    try:
        if cfg.get("train"):
            trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
            if trainer.global_step == 0:  # the "result" would be that of random weights
                raise AeLabError(
                    "No training step ran (trainer.max_epochs="
                    f"{trainer.max_epochs}, trainer.max_steps={trainer.max_steps}, "
                    f"trainer.limit_train_batches={trainer.limit_train_batches}), so the test "
                    "metrics would be those of untrained random weights; none are reported. Set "
                    "trainer.max_epochs >= 1, or evaluate a saved model with `train=false "
                    "ckpt_path=PATH`."
                )
            # `trainer.test` resets callback_metrics: keep the last epoch's train/val values now.
            fit_metrics = _finite_floats(trainer.callback_metrics)
        checkpoint = trainer.checkpoint_callback
        best = checkpoint.best_model_path if checkpoint and checkpoint.best_model_path else None
        # Under DDP only rank 0 saved the file: every rank must test the path rank 0 wrote.
        best = trainer.strategy.broadcast(best)
        if cfg.get("test"):
            test_ckpt = (best or "last") if cfg.get("train") else cfg.ckpt_path
            trainer.test(module, datamodule=datamodule, ckpt_path=test_ckpt)
        exit_code = 0
    except SystemExit:
        if not trainer.interrupted:
            raise
        # Ctrl-C: Lightning has shut down and calls sys.exit(1); say how to go on.
        if trainer.is_global_zero:
            last = ckpt_dir / "last.ckpt"
            print(f"\n[ae-lab] interrupted. {resume_command(last)}", file=sys.stderr)
        raise SystemExit(130) from None  # 128 + SIGINT, the shell's code for Ctrl-C
    finally:
        if isinstance(logger, WandbLogger):
            import wandb

            if wandb.run is not None:
                wandb_info = {
                    "wandb_dir": str(Path(wandb.run.dir).parent),
                    "wandb_url": wandb.run.url if not wandb.run.offline else None,
                    "wandb_mode": "offline" if wandb.run.offline else "online",
                }
                wandb.run.finish(exit_code=exit_code)

    # After `trainer.test`, callback_metrics hold only what the module logged from test_metrics.
    result: dict[str, Any] = fit_metrics | module.test_metrics
    result["output_dir"] = str(out_dir)
    result["best_checkpoint"] = best
    last = ckpt_dir / "last.ckpt"
    result["last_checkpoint"] = str(last) if last.exists() else None
    return result | wandb_info
