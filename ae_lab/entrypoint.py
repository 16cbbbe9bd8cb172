"""What `train.py` wraps around `train(cfg)`: user errors as one paragraph instead of a traceback,
and what a run of a Hydra multirun needs (its own folder, the sweep's W&B group, a result file)."""

import json
import secrets
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ae_lab.errors import user_error

# `${ae_lab.uid:}` in conf/config.yaml: a random suffix for the run (and sweep) folder, so that
# two runs started in the same second never share one. Cached: one value per composed config,
# and Hydra copies the cache into every job of a multirun, so the sweep folder is one folder.
OmegaConf.register_new_resolver("ae_lab.uid", lambda: secrets.token_hex(3), use_cache=True)


def run_cli(fn: Callable[[DictConfig], dict[str, Any]], cfg: DictConfig) -> dict[str, Any]:
    """Call `fn(cfg)` for one run; print an `AeLabError` as one paragraph on stderr and exit 2.

    In a Hydra multirun the error is raised instead (Hydra marks that job failed, runs the others
    and exits non-zero at the end) and a run without `logger.group` joins the sweep's group.
    With `cfg.result_file` the metrics, or the error, are also written there as JSON.
    """
    multirun = _hydra_mode() == "MULTIRUN"
    if multirun:
        join_sweep_group(cfg)
    start = time.monotonic()
    try:
        result = fn(cfg)
    except Exception as err:
        error = user_error(err)
        _write_result(cfg, {"error": str(error or f"{type(err).__name__}: {err}")}, start)
        if error is None:
            raise
        print(f"\n[ae-lab] error: {error}\n", file=sys.stderr)
        if multirun:
            raise error from None
        sys.exit(2)
    _write_result(cfg, result, start)
    if is_rank_zero():  # under DDP every process returns; one summary is enough
        print_summary(result)
    return result


def _hydra_mode() -> str | None:
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get().mode.name if HydraConfig.initialized() else None


def join_sweep_group(cfg: DictConfig) -> None:
    """Without `logger.group`, every run of a multirun logs to one W&B group named after the sweep
    folder (`multirun/2025-06-01/12-00-00-3fa2b1` -> `2025-06-01_12-00-00-3fa2b1`)."""
    from hydra.core.hydra_config import HydraConfig

    if cfg.get("logger") and "group" in cfg.logger and not cfg.logger.group:
        cfg.logger.group = "_".join(Path(HydraConfig.get().sweep.dir).parts[-2:])


def _write_result(cfg: DictConfig, result: dict[str, Any], start: float) -> None:
    if cfg.get("result_file") and is_rank_zero():  # under DDP only rank 0 writes it
        import torch

        status = "failed" if "error" in result else "ok"
        seconds, threads = time.monotonic() - start, torch.get_num_threads()
        write_result_file(
            cfg.result_file,
            result | {"status": status, "seconds": seconds, "torch_threads": threads},
        )


def is_rank_zero() -> bool:
    """True outside distributed training and in its first process."""
    from lightning.pytorch.utilities import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0


def print_summary(result: dict[str, Any]) -> None:
    """Where the results are, and the headline metrics."""
    lines = ["", "[ae-lab] done."]
    for label, key in (
        ("best checkpoint", "best_checkpoint"),
        ("last checkpoint", "last_checkpoint"),
        ("output folder", "output_dir"),
        ("W&B run folder", "wandb_dir"),
        ("W&B run page", "wandb_url"),
    ):
        if result.get(key):
            lines.append(f"  {label:16s} {result[key]}")
    if result.get("wandb_mode") == "offline" and result.get("wandb_dir"):
        lines.append(f"  upload later     wandb sync {result['wandb_dir']}")
    for key in ("train/loss", "val/loss", "test/image_auroc"):
        if key in result:
            lines.append(f"  {key:16s} {result[key]:.4f}")
    print("\n".join(lines))


def write_result_file(path: str | Path, result: dict[str, Any]) -> None:
    """The returned metrics and paths as JSON (non-JSON values as strings)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, sort_keys=True, default=str))
