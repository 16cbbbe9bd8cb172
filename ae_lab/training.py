"""`train(cfg)`: instantiate the datamodule, the LightningModule, the callbacks, the logger and the
trainer from the Hydra config, fit, test, return the metrics; `run_cli` is what `train.py` wraps
around it (user errors as one paragraph, the result file, the summary printout)."""

import json
import math
import os
import re
import secrets
import shlex
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import Logger, WandbLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from ae_lab.errors import AeLabError, flatten
from ae_lab.losses import ScoringConfig
from ae_lab.module import AutoencoderModule, non_finite_tensors, wants_total_steps

# `${ae_lab.uid:}` in conf/config.yaml: a random suffix for the run (and sweep) folder, so that
# two runs started in the same second never share one. Cached: one value per composed config,
# and Hydra copies the cache into every job of a multirun, so the sweep folder is one folder.
OmegaConf.register_new_resolver("ae_lab.uid", lambda: secrets.token_hex(3), use_cache=True)
# `${ae_lab.name:${run_name}}`: the run name as one short folder name (`run_name=../../x` or a
# 300-character name would otherwise escape the output layout or exceed the file-name limit).
OmegaConf.register_new_resolver(
    "ae_lab.name", lambda name: re.sub(r"[^\w.=+-]+", "_", str(name)).strip("._")[:80] or "run"
)


def check_output_root(argv: list[str]) -> None:
    """Exit with one paragraph when the folder Hydra creates for the run cannot be made: the
    root from `AE_LAB_OUTPUTS`, `hydra.run.dir=` or `hydra.sweep.dir=` is a file or read-only."""
    roots = [("AE_LAB_OUTPUTS", os.environ.get("AE_LAB_OUTPUTS"))]
    roots += [
        tuple(a.split("=", 1)) for a in argv if a.startswith(("hydra.run.dir=", "hydra.sweep.dir="))
    ]
    for key, value in roots:
        path = Path(value or ".")
        while not path.exists():  # the first folder that exists is where Hydra creates its own
            path = path.parent
        if not path.is_dir() or not os.access(path, os.W_OK):
            what = "not a folder" if not path.is_dir() else "not writable"
            print(
                f"\n[ae-lab] error: {key}={value} cannot hold the run's folder: {path} is {what}. "
                f"Point {key} to a folder you can write to, e.g. {key}=outputs/mine.\n",
                file=sys.stderr,
            )
            sys.exit(2)


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit (if `cfg.train`) and test (if `cfg.test`) one autoencoder; return metrics and paths.

    The returned dict holds every `train/...`, `val/...` and `test/...` metric as a float, plus
    `best_checkpoint`, `last_checkpoint`, `output_dir` and (with W&B) `wandb_dir`, `wandb_url`.
    """
    check_settings(cfg)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    if cfg.torch.get("num_threads"):
        torch.set_num_threads(int(cfg.torch.num_threads))
    torch.set_float32_matmul_precision(cfg.torch.matmul_precision)
    if cfg.get("output_dir"):
        out_dir = Path(cfg.output_dir)
    elif HydraConfig.initialized():  # the Hydra run folder
        out_dir = Path(HydraConfig.get().runtime.output_dir)
    else:  # the compose API
        out_dir = Path("outputs") / str(cfg.run_name)
    ckpt_dir = out_dir / "checkpoints"

    datamodule: L.LightningDataModule = hydra.utils.instantiate(cfg.data)
    module = build_module(cfg)
    if cfg.ckpt_path:  # before any training or W&B run: a wrong file fails now, clearly
        check_checkpoint(cfg, module)
    if cfg.test and datamodule.table("test").empty:  # fail before training
        raise AeLabError(datamodule.no_test_images_message())
    logger = None
    if cfg.get("logger") and "_target_" in cfg.logger:
        from ae_lab.callbacks import ensure_wandb_mode

        try:
            import wandb  # noqa: F401
        except ImportError as exc:
            raise AeLabError(
                f"logger=wandb needs the `wandb` package, which does not import here ({exc}). "
                "Install the project (`pip install -e .`), or run without W&B with logger=none."
            ) from exc
        ensure_wandb_mode()
        Path(cfg.logger.get("save_dir") or ".").mkdir(parents=True, exist_ok=True)
        logger = hydra.utils.instantiate(cfg.logger)
    checkpoints = {n for n, c in cfg.callbacks.items() if c and "ModelCheckpoint" in c._target_}
    callbacks = [
        hydra.utils.instantiate(c, **({"dirpath": ckpt_dir} if name in checkpoints else {}))
        for name, c in cfg.callbacks.items()
        if c and (logger is not None or name in checkpoints)  # the others log
    ]
    trainer = build_trainer(cfg, logger, callbacks, out_dir)
    if logger is not None:
        logger.log_hyperparams(hyperparams(cfg, logger))

    exit_code, result = 1, {}
    try:
        if cfg.train:
            trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
            if trainer.global_step == 0:  # the "result" would be that of random weights
                raise AeLabError(
                    f"No training step ran (trainer.max_epochs={trainer.max_epochs}, "
                    f"trainer.max_steps={trainer.max_steps}, trainer.limit_train_batches="
                    f"{trainer.limit_train_batches}), so the test metrics would be those of "
                    "untrained random weights; none are reported. Set trainer.max_epochs >= 1, or "
                    "evaluate a saved model with `train=false ckpt_path=PATH`."
                )
            # `trainer.test` resets callback_metrics: keep the last epoch's train/val values now.
            result = finite_floats(trainer.callback_metrics)
        best = trainer.checkpoint_callback.best_model_path or None
        # Under DDP only rank 0 tests, on one device, as Lightning recommends: each test image is
        # scored once, so the metrics equal a single-process evaluation. Without the process group
        # Lightning's collectives (e.g. around prepare_data) do not wait for the other ranks.
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        if cfg.test and trainer.is_global_zero:
            one = trainer.world_size > 1
            tester = build_trainer(cfg, logger, callbacks, out_dir, one) if one else trainer
            ckpt = (best or "last") if cfg.train else cfg.ckpt_path
            (tested,) = tester.test(module, datamodule=datamodule, ckpt_path=ckpt)
            result |= finite_floats(tested)
        exit_code = 0
    except SystemExit:
        if not trainer.interrupted:
            raise
        # Ctrl-C: Lightning has shut down and calls sys.exit(1); say how to go on.
        if trainer.is_global_zero:
            resume = resume_command(ckpt_dir / "last.ckpt")
            print(f"\n[ae-lab] interrupted. {resume}", file=sys.stderr)
        raise SystemExit(130) from None  # 128 + SIGINT, the shell's code for Ctrl-C
    finally:
        if isinstance(logger, WandbLogger) and trainer.is_global_zero:
            run = logger.experiment
            result["wandb_dir"] = str(Path(run.dir).parent)
            result["wandb_url"] = None if run.offline else run.url
            result["wandb_mode"] = "offline" if run.offline else "online"
            run.finish(exit_code=exit_code)
    last = ckpt_dir / "last.ckpt"
    result["last_checkpoint"] = str(last) if last.exists() else None
    return result | {"output_dir": str(out_dir), "best_checkpoint": best}


def check_settings(cfg: DictConfig) -> None:
    """Settings that would waste a run or report a false result, refused before anything starts."""
    if not cfg.train and not cfg.ckpt_path:
        raise AeLabError(
            "`train=false` evaluates a saved model, so it needs `ckpt_path=PATH/TO/model.ckpt` "
            "(for example the `last.ckpt` in a previous run's checkpoints folder)."
        )
    if cfg.ckpt_path and not Path(cfg.ckpt_path).is_file():
        fix = (
            "is a folder: point it to a checkpoint file in it, e.g. "
            f"ckpt_path={Path(cfg.ckpt_path) / 'last.ckpt'}."
            if Path(cfg.ckpt_path).is_dir()
            else "does not exist. Point it to an existing .ckpt file, e.g. "
            "outputs/<date>/<time>-<run>/checkpoints/last.ckpt."
        )
        raise AeLabError(f"Checkpoint not found: ckpt_path={cfg.ckpt_path} {fix}")
    limit = cfg.trainer.get("limit_test_batches", 1.0)
    if cfg.test and not (isinstance(limit, float) and limit == 1.0):
        raise AeLabError(
            f"trainer.limit_test_batches={limit} would score only part of the test set, so the "
            "test metrics would not be comparable with any other run. Remove the override (or set "
            "trainer.limit_test_batches=1.0); to skip testing altogether, set test=false."
        )


def build_module(cfg: DictConfig) -> AutoencoderModule:
    """The LightningModule of `cfg`. The partial optimizer and scheduler are tried once on a dummy
    parameter, so that a bad value (`optimizer.lr=-1`, `optimizer.lr=fast`) fails now, naming its
    key, not inside fit."""
    optimizer = hydra.utils.instantiate(cfg.optimizer)
    with rejected_settings(cfg, "optimizer", "e.g. optimizer.lr=1e-3 (a positive number)"):
        trial = optimizer(params=[torch.nn.Parameter(torch.zeros(1))])
    scheduler = hydra.utils.instantiate(cfg.scheduler) if cfg.get("scheduler") else None
    if scheduler is not None:
        with rejected_settings(cfg, "scheduler", "scheduler.<name>=..."):
            scheduler(
                optimizer=trial, **({"total_steps": 10} if wants_total_steps(scheduler) else {})
            )
    module = AutoencoderModule(
        net=hydra.utils.instantiate(cfg.model.net),
        loss=hydra.utils.instantiate(cfg.loss.fn),
        optimizer=optimizer,
        scheduler=scheduler,
        kl_beta=float(cfg.model.get("kl_beta", 0.0)),
        scoring=ScoringConfig(**OmegaConf.to_container(cfg.scoring, resolve=True)),
    )
    # Stored in every checkpoint (Lightning's `hyper_parameters`), so a checkpoint can say which
    # model and data settings it was trained with; `logger=False`: the run logs its config itself.
    module.save_hyperparameters({"config": OmegaConf.to_container(cfg, resolve=True)}, logger=False)
    if cfg.torch.channels_last:
        # NHWC weights make every conv (and its output) channels-last: 1.6x faster training on
        # CPU with oneDNN (bench/README.md); inputs are converted inside the first conv.
        module.net = module.net.to(memory_format=torch.channels_last)
    if cfg.torch.compile:
        compile_network(module.net)
    return module


@contextmanager
def rejected_settings(cfg: DictConfig, key: str, example: str) -> Iterator[None]:
    try:
        yield
    except (TypeError, ValueError) as exc:
        values = ", ".join(f"{key}.{k}={v!r}" for k, v in cfg[key].items() if not k.startswith("_"))
        raise AeLabError(
            f"{cfg[key].get('_target_', key)} rejects the `{key}` settings ({values}): {exc}. "
            f"Fix the value on the command line, {example}."
        ) from exc


def compile_network(net: torch.nn.Module, **options: Any) -> torch.nn.Module:
    """Compile `net`'s forward paths in place (`forward`, `forward_with_latent`, `encode`, and a
    VAE's `forward_with_kl`): `torch.compile(net)` would prefix every state-dict key with
    `_orig_mod.` and leave attribute calls such as `net.encode` to the eager module."""
    for name in ("forward", "forward_with_kl", "forward_with_latent", "encode"):
        if hasattr(net, name):
            setattr(net, name, torch.compile(getattr(net, name), **options))  # no weights
    return net


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to a temporary name and renames it, so that a full disk leaves the
    previous complete file in place and one clear error, never a truncated `*.ckpt`."""

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
    cfg: DictConfig,
    logger: Logger | None,
    callbacks: list[Callback],
    out_dir: Path,
    single_device: bool = False,
) -> L.Trainer:
    """The Lightning Trainer of `cfg.trainer`; settings this machine cannot run name their key."""
    one = {"devices": 1, "num_nodes": 1, "strategy": "auto", "sync_batchnorm": False}
    try:
        return hydra.utils.instantiate(
            cfg.trainer,
            logger=logger if logger is not None else False,
            callbacks=callbacks,
            default_root_dir=str(out_dir),
            plugins=[AtomicCheckpointIO()],
            **(one if single_device else {}),
        )
    except InstantiationException as exc:
        if not isinstance(exc.__cause__, MisconfigurationException):
            raise
        t = cfg.trainer
        raise AeLabError(
            f"Lightning rejects the trainer settings (trainer.accelerator={t.get('accelerator')}, "
            f"trainer.devices={t.get('devices')}, trainer.strategy={t.get('strategy', 'auto')}, "
            f"trainer.precision={t.get('precision')}): {exc.__cause__}. A GPU trainer "
            f"(trainer=gpu) needs a GPU that PyTorch sees (here: {torch.cuda.device_count()}); on "
            "the CPU use `trainer=default`."
        ) from exc


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


def finite_floats(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if math.isfinite(v)}


# ---- checkpoints given as ckpt_path, and the command that resumes an interrupted run -----------
def check_checkpoint(cfg: DictConfig, module: torch.nn.Module) -> None:
    """Raise AeLabError unless `cfg.ckpt_path` is a readable Lightning checkpoint whose finite
    weights fit `module` (built from `cfg`) and, to resume, has epochs left to train."""
    path = cfg.ckpt_path
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        state = ckpt["state_dict"]
    except Exception as exc:  # truncated zip, pickle errors, not a Lightning checkpoint at all
        raise AeLabError(
            f"Cannot read the checkpoint ckpt_path={path} ({type(exc).__name__}: {exc}). The file "
            "is truncated (a copy or save that did not finish) or not a checkpoint written by "
            "train.py: point `ckpt_path` to a complete .ckpt file, e.g. the run's "
            "checkpoints/last.ckpt."
        ) from exc
    wanted = module.state_dict()
    wrong = sorted(set(state) ^ set(wanted)) or [
        k for k in wanted if state[k].shape != wanted[k].shape
    ]
    if wrong:
        saved = (ckpt.get("hyper_parameters") or {}).get("config") or {}
        model, data = saved.get("model") or {}, saved.get("data") or {}
        overrides = [
            f"model={model.get('name')}",
            f"model.latent_dim={model.get('latent_dim')}",
            f"data.image_size={data.get('image_size')}",
        ]
        raise AeLabError(
            f"The checkpoint ckpt_path={path} does not fit the model of this run "
            f"(model={cfg.model.name}, model.latent_dim={cfg.model.latent_dim}, data.image_size="
            f"{cfg.data.image_size}): e.g. the weights {', '.join(wrong[:3])} differ. It was "
            f"trained with {', '.join(overrides)}: evaluate or resume it with the same "
            f"settings, e.g. `{' '.join(overrides)}`."
        )
    bad = non_finite_tensors(state)
    if bad:
        raise AeLabError(
            f"The checkpoint ckpt_path={path} holds NaN/inf weights ({len(bad)} tensors, e.g. "
            f"{bad[0]}): it was saved after training diverged, so its metrics would be "
            "meaningless. Use an earlier checkpoint, or train again with a lower `optimizer.lr`."
        )
    saved = (ckpt.get("hyper_parameters") or {}).get("config") or {}
    for key in ("loss.name", "data.categories"):  # resuming must go on training the same thing
        before, now = OmegaConf.select(OmegaConf.create(saved), key), OmegaConf.select(cfg, key)
        if cfg.train and before is not None and before != now:
            raise AeLabError(
                f"The checkpoint ckpt_path={path} was trained with {key}={before}, this run has "
                f"{key}={now}: resuming would continue it as another run under a wrong name. "
                f"Resume with {key}={before}, or start a new run without ckpt_path."
            )
    done = int(ckpt.get("epoch", -1)) + 1
    if cfg.train and done >= cfg.trainer.max_epochs:
        raise AeLabError(
            f"The checkpoint ckpt_path={path} has already trained {done} epochs and "
            f"trainer.max_epochs={cfg.trainer.max_epochs}: there is nothing left to resume. "
            f"Raise trainer.max_epochs (e.g. trainer.max_epochs={done + 10}), or evaluate it "
            "with train=false."
        )


def resume_command(last: Path) -> str:
    """What to tell a user whose run was interrupted: the command that resumes it, if possible."""
    if not last.is_file():
        return (
            "No checkpoint was written yet (interrupted in the first epoch): start the run again."
        )
    args = ["python", "train.py"]
    if HydraConfig.initialized():  # the run's own overrides, so that the resumed run is the same
        task = HydraConfig.get().overrides.task
        args += [a for a in task if a.split("=", 1)[0].lstrip("+~") != "ckpt_path"]
    return f"Resume it from its last checkpoint with:\n  {shlex.join([*args, f'ckpt_path={last}'])}"


# ---- the command line ---------------------------------------------------------------------------
def run_cli(fn: Callable[[DictConfig], dict[str, Any]], cfg: DictConfig) -> dict[str, Any]:
    """Call `fn(cfg)` for one run; print an `AeLabError` as one paragraph on stderr and exit 2.

    In a Hydra multirun the error is raised instead (Hydra marks that job failed, runs the others
    and exits non-zero at the end) and a run without `logger.group` joins the sweep's group (the
    sweep folder's name, `multirun/2025-06-01/12-00-00-3fa2b1` -> `2025-06-01_12-00-00-3fa2b1`).
    With `cfg.result_file` the metrics, or the error, are also written there as JSON.
    """
    # `mode` is None where a config was composed without a run (the compose API, tests).
    mode = HydraConfig.get().mode if HydraConfig.initialized() else None
    multirun = getattr(mode, "name", None) == "MULTIRUN"
    if multirun and cfg.get("logger") and "group" in cfg.logger and not cfg.logger.group:
        cfg.logger.group = "_".join(Path(HydraConfig.get().sweep.dir).parts[-2:])
    start = time.monotonic()
    try:
        result = fn(cfg)
    except Exception as err:
        # The AeLabError itself, or the one a Hydra-instantiated constructor raised.
        cause = err.__cause__ if isinstance(err, InstantiationException) else err
        error = cause if isinstance(cause, AeLabError) else None
        write_result(cfg, {"error": str(error or f"{type(err).__name__}: {err}")}, start)
        if error is None:
            raise
        print(f"\n[ae-lab] error: {error}\n", file=sys.stderr)
        if multirun:
            raise error from None
        sys.exit(2)
    write_result(cfg, result, start)
    if rank_zero_only.rank == 0:  # under DDP every process returns; one summary is enough
        print_summary(result)
    return result


def write_result(cfg: DictConfig, result: dict[str, Any], start: float) -> None:
    """The returned metrics and paths (or the error) as JSON in `cfg.result_file`, on rank 0."""
    if not cfg.get("result_file") or rank_zero_only.rank != 0:
        return
    result = result | {
        "status": "failed" if "error" in result else "ok",
        "seconds": time.monotonic() - start,
        "torch_threads": torch.get_num_threads(),
    }
    path = Path(cfg.result_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, sort_keys=True, default=str))


def print_summary(result: dict[str, Any]) -> None:
    """Where the results are (checkpoints, output and W&B folders, W&B page), headline metrics."""
    print("\n[ae-lab] done.")
    for key in ["best_checkpoint", "last_checkpoint", "output_dir", "wandb_dir", "wandb_url"]:
        if result.get(key):
            print(f"  {key:16s} {result[key]}")
    if result.get("wandb_mode") == "offline" and result.get("wandb_dir"):
        print(f"  upload later     wandb sync {shlex.quote(result['wandb_dir'])}")
    for key in ["train/loss", "val/loss", "test/image_auroc"]:
        if key in result:
            print(f"  {key:16s} {result[key]:.4f}")
