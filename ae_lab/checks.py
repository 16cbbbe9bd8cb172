"""Checks before anything trains: settings that would waste a run or report a false result, the
checkpoint given as `ckpt_path`, and one dry batch through the model, loss and scoring."""

import os
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock, Timeout
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from ae_lab.batch import Batch
from ae_lab.errors import AeLabError, SettingError
from ae_lab.module import AutoencoderModule, non_finite_tensors


def check_settings(cfg: DictConfig) -> None:
    """The run-level settings no library class owns: what to do (train/test/ckpt_path), the seed
    and the share of the test set."""
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
    check_integer("seed", cfg.seed, 0, 2**32 - 1, " (numpy's range), e.g. seed=42")
    forever = " (Lightning reads -1 as 'train forever'), e.g. trainer.max_epochs=30"
    check_integer("trainer.max_epochs", cfg.trainer.get("max_epochs"), 1, 100_000, forever)
    check_lightning(cfg)
    limit = cfg.trainer.get("limit_test_batches", 1.0)
    if cfg.test and not (isinstance(limit, float) and limit == 1.0):
        raise AeLabError(
            f"trainer.limit_test_batches={limit} would score only part of the test set, so the "
            "test metrics would not be comparable with any other run. Remove the override (or set "
            "trainer.limit_test_batches=1.0); to skip testing altogether, set test=false."
        )


# Lightning's integer settings it checks only while fitting (a bare TypeError or ZeroDivisionError
# then), or not at all; the least value each accepts.
TRAINER_COUNTS = {"log_every_n_steps": 1, "check_val_every_n_epoch": 1, "num_sanity_val_steps": -1}


def check_integer(key: str, value: Any, low: int, high: int | None = None, hint: str = "") -> None:
    """Raise AeLabError unless `value` is an integer (not a bool) from `low` to `high`."""
    if not (type(value) is int and low <= value <= (value if high is None else high)):
        bounds = f">= {low}" if high is None else f"from {low} to {high}"
        raise AeLabError(f"{key}={value!r} must be an integer {bounds}{hint}.")


def check_lightning(cfg: DictConfig) -> None:
    """The Trainer and callback settings Lightning would reject late or without naming them, or
    obey to the machine's harm: a devices count above what the machine has starts that many
    processes."""
    trainer = cfg.trainer
    for name, node in (cfg.get("callbacks") or {}).items():
        if isinstance(node, DictConfig) and node.get("save_top_k") is not None:
            keep_all = " (-1 keeps every checkpoint)"
            check_integer(f"callbacks.{name}.save_top_k", node.save_top_k, -1, hint=keep_all)
    for key, least in TRAINER_COUNTS.items():
        if trainer.get(key) is not None:
            check_integer(f"trainer.{key}", trainer[key], least)
    for key in ("limit_train_batches", "limit_val_batches"):
        value = trainer.get(key, 1.0)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise AeLabError(
                f"trainer.{key}={value!r} must be a share of the batches in [0.0, 1.0] or a "
                f"number of batches, e.g. trainer.{key}=1.0."
            )
    devices, accelerator = trainer.get("devices", "auto"), trainer.get("accelerator", "auto")
    if type(devices) is int:  # not a bool, not "auto" or a list
        gpu = accelerator in ("gpu", "cuda") or (
            accelerator == "auto" and torch.cuda.is_available()
        )
        have = torch.cuda.device_count() if gpu else os.cpu_count() or 1
        if not 1 <= devices <= have:
            raise AeLabError(
                f"trainer.devices={devices} asks for {devices} {'GPUs' if gpu else 'processes'}, "
                f"and this machine has {have} {'GPU(s)' if gpu else 'cores'}: use a number from 1 "
                f"to {have}, or trainer.devices=auto."
            )


def check_run(cfg: DictConfig, module: AutoencoderModule, datamodule: Any) -> None:
    """What needs the built module and data: the checkpoint fits, the windows fit the images,
    there is something to test, and one batch goes through every computation the run uses."""
    if cfg.ckpt_path:
        check_checkpoint(cfg, module)
    size = int(datamodule.image_size)
    for part in (module.scoring, module.loss_fn):  # SSIM windows, reflect-padded inside the image
        window = getattr(part, "window_size", None)
        if window is not None and window // 2 >= size:
            raise SettingError(
                type(part),
                "window_size",
                f"window_size={window} does not fit a {size}-pixel image: use an odd window_size "
                f"below {2 * size}",
            )
    if cfg.test and datamodule.table("test").empty:
        raise AeLabError(datamodule.no_test_images_message())
    dry_run(module, size)


def dry_run(module: AutoencoderModule, size: int) -> None:
    """Two blank images through the network, the loss and the scoring (eval mode, no gradient):
    a setting that would fail in the first step, or after training in the test step, fails now."""
    x = torch.full((2, 3, size, size), 0.5)
    batch = Batch(
        image=x,
        label=torch.tensor([0, 1]),
        mask=torch.zeros(2, 1, size, size),
        has_mask=torch.tensor([False, True]),
        index=torch.arange(2),
        category=["dry", "dry"],
        defect=["good", "dry"],
        path=["", ""],
    )
    training = module.training
    module.eval()
    try:
        with torch.no_grad():
            out = module.predict(batch)
            module.loss_fn(out.recon, x)
    except (RuntimeError, ValueError, OverflowError, TypeError) as exc:
        raise AeLabError(
            f"The model, loss or scoring settings fail on a {size}x{size} image before training "
            f"({type(exc).__name__}: {exc}). Check the model.net, loss.fn and scoring settings "
            "against data.image_size (e.g. SSIM windows and network depth)."
        ) from exc
    finally:
        module.train(training)


def claim_output_dir(out_dir: Path) -> FileLock | None:
    """Hold `out_dir` for this process (released when it exits, however it exits): a second run
    started with the same `hydra.run.dir` or `output_dir` would mix its checkpoints with ours."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if rank_zero_only.rank != 0:  # DDP: the run's other processes share rank zero's folder
        return None
    lock = FileLock(out_dir / ".run.lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise AeLabError(
            f"Another run is writing to {out_dir} (its checkpoints and logs): two runs in one "
            "folder would overwrite each other's last.ckpt. Give this run its own folder (leave "
            "hydra.run.dir and output_dir unset for a fresh one), or wait for the other to end."
        ) from None
    return lock


# ---- the checkpoint given as ckpt_path --------------------------------------------------------
def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """`torch.load(path, weights_only=True)`: tensors, numbers, strings and containers only, so
    a `.ckpt` from someone else cannot run code; anything else is refused in one paragraph."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, a pickle that needs more, not a checkpoint at all
        needs = "Weights only load failed" in str(exc)
        why = (
            "it holds Python objects beyond tensors and plain values, which loading would have "
            "to execute (a checkpoint written by train.py never does): only load it with "
            "torch.load(weights_only=False) if you trust whoever made it"
            if needs
            else f"{type(exc).__name__}: {exc}. The file is truncated (a copy or save that did "
            "not finish) or not a checkpoint written by train.py"
        )
        raise AeLabError(
            f"Cannot read the checkpoint ckpt_path={path}: {why}. Point `ckpt_path` to a "
            "complete .ckpt file of ae-lab, e.g. the run's checkpoints/last.ckpt."
        ) from exc


def check_checkpoint(cfg: DictConfig, module: torch.nn.Module) -> None:
    """Raise AeLabError unless `cfg.ckpt_path` is a readable Lightning checkpoint whose finite
    weights fit `module` (built from `cfg`) and, to resume, has epochs left to train."""
    path = cfg.ckpt_path
    ckpt = load_checkpoint(path)
    state = ckpt.get("state_dict") if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise AeLabError(
            f"Cannot read the checkpoint ckpt_path={path}: it has no `state_dict`, so it is not "
            "a Lightning checkpoint written by train.py. Point `ckpt_path` to a run's "
            "checkpoints/last.ckpt."
        )
    saved = OmegaConf.create((ckpt.get("hyper_parameters") or {}).get("config") or {})
    wanted = {k: v.shape for k, v in module.state_dict().items()}
    wrong = sorted(set(state) ^ set(wanted)) or [k for k in wanted if state[k].shape != wanted[k]]
    if wrong:  # `model=ae model.latent_dim=128 data.image_size=256` of the checkpoint and the run
        keys = ("model.name", "model.latent_dim", "data.image_size")
        was, now = (
            [f"{k.removesuffix('.name')}={OmegaConf.select(c, k)}" for k in keys]
            for c in (saved, cfg)
        )
        raise AeLabError(
            f"The checkpoint ckpt_path={path} does not fit the model of this run "
            f"({', '.join(now)}): e.g. the weights {', '.join(wrong[:3])} differ. It was "
            f"trained with {', '.join(was)}: evaluate or resume it with the same "
            f"settings, e.g. `{' '.join(was)}`."
        )
    bad = non_finite_tensors(state)
    if bad:
        raise AeLabError(
            f"The checkpoint ckpt_path={path} holds NaN/inf weights ({len(bad)} tensors, e.g. "
            f"{bad[0]}): it was saved after training diverged, so its metrics would be "
            "meaningless. Use an earlier checkpoint, or train again with a lower `optimizer.lr`."
        )
    for key in ("loss.name", "data.categories"):  # resuming must go on training the same thing
        before, now = OmegaConf.select(saved, key), OmegaConf.select(cfg, key)
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
