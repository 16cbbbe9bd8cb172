"""Checks on a checkpoint given as `ckpt_path`, and the command that resumes an interrupted run."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from torch import nn

from ae_lab.errors import AeLabError
from ae_lab.flatten import flatten
from ae_lab.module import COMPILED_PREFIX as _COMPILED
from ae_lab.module import non_finite_tensors


def check_checkpoint(path: str | Path, module: nn.Module, config: dict[str, Any]) -> None:
    """Raise AeLabError unless `path` is a readable Lightning checkpoint whose finite weights fit
    `module` (built from `config`, the run's resolved config). Names the saved settings if not."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # truncated zip, pickle errors, not a torch file at all
        raise AeLabError(
            f"Cannot read the checkpoint ckpt_path={path} ({type(exc).__name__}: {exc}). The file "
            "is truncated (a copy or save that did not finish) or not a checkpoint: point "
            "`ckpt_path` to a complete .ckpt file, e.g. the run's checkpoints/last.ckpt."
        ) from exc
    state = ckpt.get("state_dict") if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise AeLabError(
            f"ckpt_path={path} is not a Lightning checkpoint (no `state_dict` in it). Point it to a "
            ".ckpt file written by train.py (the run's checkpoints folder)."
        )
    saved = {k.replace(_COMPILED, ""): v for k, v in state.items()}
    wanted = {k.replace(_COMPILED, ""): v for k, v in module.state_dict().items()}
    wrong = sorted(set(saved) ^ set(wanted)) or [
        k for k in wanted if tuple(saved[k].shape) != tuple(wanted[k].shape)
    ]
    if wrong:
        hparams = ckpt.get("hyper_parameters") or {}
        raise AeLabError(
            f"The checkpoint ckpt_path={path} does not fit the model of this run "
            f"({_describe(config)}): e.g. the weights {', '.join(wrong[:3])} differ. "
            + _saved_settings(hparams.get("config"), config)
        )
    bad = non_finite_tensors(saved)
    if bad:
        raise AeLabError(
            f"The checkpoint ckpt_path={path} holds NaN/inf weights ({len(bad)} tensors, e.g. "
            f"{bad[0]}): it was saved after training diverged, so its metrics would be meaningless. "
            "Use an earlier checkpoint, or train again with a lower `optimizer.lr`."
        )


def _describe(config: dict[str, Any]) -> str:
    model = config.get("model") or {}
    data = config.get("data") or {}
    return (
        f"model={model.get('name')}, model.latent_dim={model.get('latent_dim')}, "
        f"data.image_size={data.get('image_size')}"
    )


def _saved_settings(saved: dict[str, Any] | None, current: dict[str, Any]) -> str:
    """Which settings the checkpoint was trained with, as the overrides that rebuild its model."""
    if not isinstance(saved, dict):
        return (
            "The checkpoint does not record its settings (written by an older ae-lab): pass the "
            "`model=...`, `model.*` and `data.image_size` it was trained with."
        )
    model, size = saved.get("model") or {}, (saved.get("data") or {}).get("image_size")
    overrides = [
        f"model={model.get('name')}",
        f"model.latent_dim={model.get('latent_dim')}",
        f"data.image_size={size}",
    ]
    if model.get("name") == (current.get("model") or {}).get("name"):  # same model, other sizes
        now = flatten((current.get("model") or {}).get("net") or {}, "model.net")
        overrides += [
            f"{k}={v}"
            for k, v in flatten(model.get("net") or {}, "model.net").items()
            if now.get(k) != v and k.rsplit(".", 1)[1] not in ("image_size", "latent_dim")
        ]
    return (
        f"It was trained with {_describe(saved)}: evaluate or resume it with the same settings, "
        f"e.g. `{' '.join(overrides)}`."
    )


def resume_command(last: Path | None) -> str:
    """What to tell a user whose run was interrupted: the command that resumes it, if possible."""
    if last is None or not last.is_file():
        return (
            "No checkpoint was written yet (interrupted in the first epoch): start the run again."
        )
    args = ["python", "train.py"]
    if HydraConfig.initialized():  # the run's own overrides, so that the resumed run is the same
        task = HydraConfig.get().overrides.task
        args += [a for a in task if a.split("=", 1)[0].lstrip("+~") != "ckpt_path"]
    args.append(f"ckpt_path={last}")
    return f"Resume it from its last checkpoint with:\n  {shlex.join(args)}"
