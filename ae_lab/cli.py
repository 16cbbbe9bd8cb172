"""The command line around `train(cfg)`: a user's error as one paragraph naming the config key and
the fix (exit 2), Ctrl-C with the command that goes on (exit 130), the result file and the
summary. The library raises about its own arguments; this is where they become config keys."""

import json
import re
import shlex
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from ae_lab.errors import AeLabError, SettingError, error_line
from ae_lab.module import NonFiniteLossError
from ae_lab.training import RunInterrupted

CONF = Path(__file__).resolve().parents[1] / "conf"


# ---- library errors -> config keys --------------------------------------------------------------
def _targets(node: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """(key, `_target_`) of every instantiable node of the unresolved config; interpolated nodes
    (`model.loss: ${loss.fn}`) are skipped: the node they point to is visited where it lives."""
    if not isinstance(node, DictConfig):
        return
    if "_target_" in node:
        yield path, str(node._target_)
    for key in node:
        if not OmegaConf.is_interpolation(node, key):
            yield from _targets(node._get_node(key), f"{path}.{key}" if path else str(key))


def _source(cfg: DictConfig, key: str) -> str:
    """`key`, or the key its value is interpolated from (`model.net.image_size` ->
    `data.image_size`)."""
    parent, _, name = key.rpartition(".")
    node = OmegaConf.select(cfg, parent) if parent else cfg
    if isinstance(node, DictConfig) and name in node and OmegaConf.is_interpolation(node, name):
        raw = OmegaConf.to_container(node, resolve=False)[name]
        found = re.fullmatch(r"\$\{([\w.]+)\}", str(raw))
        if found:
            return _source(cfg, found.group(1))
    return key


def setting_keys(cfg: DictConfig, error: SettingError) -> list[str]:
    """The config keys that set the arguments `error` names, through interpolations."""
    target = f"{error.owner.__module__}.{error.owner.__qualname__}"
    paths = [path for path, found in _targets(cfg) if found == target]
    keys = [_source(cfg, f"{path}.{name}".lstrip(".")) for path in paths for name in error.names]
    return list(dict.fromkeys(keys))


def _shown(cfg: DictConfig, key: str) -> str:
    """`key=value`, or every `key.leaf=value` of a section (`optimizer.lr=-1.0, ...`)."""
    value = OmegaConf.select(cfg, key)
    if isinstance(value, DictConfig):
        leaves = OmegaConf.to_container(value, resolve=True)
        return ", ".join(f"{key}.{k}={v!r}" for k, v in leaves.items() if not k.startswith("_"))
    return f"{key}={value!r}"


def describe(error: BaseException, cfg: DictConfig) -> str | None:
    """The paragraph for an error the user caused, in config keys; None for a bug."""
    chain = [error]
    while chain[-1].__cause__ is not None or chain[-1].__context__ is not None:
        chain.append(chain[-1].__cause__ or chain[-1].__context__)
    setting = next((e for e in chain if isinstance(e, SettingError)), None)
    if setting is not None:
        keys = setting_keys(cfg, setting)
        if not keys:  # an argument no config key sets: say whose it is
            return f"Invalid setting: {setting}."
        group = keys[0].split(".")[0]
        where = f"conf/{group}/" if (CONF / group).is_dir() else "conf/config.yaml"
        section = isinstance(OmegaConf.select(cfg, keys[0]), DictConfig)
        example = f"{keys[0]}.<name>=..." if section else f"{keys[0]}=..."
        return (
            f"Invalid setting {', '.join(_shown(cfg, k) for k in keys)}: {setting}. Fix it on "
            f"the command line ({example}) or in {where}."
        )
    diverged = next((e for e in chain if isinstance(e, NonFiniteLossError)), None)
    if diverged is not None:
        lr = OmegaConf.select(cfg, "optimizer.lr")
        fix = f"optimizer.lr={lr:g} now, try 10x lower" if lr else "optimizer.lr=..."
        if not cfg.trainer.get("gradient_clip_val"):
            fix += ", or clip gradients with trainer.gradient_clip_val=1.0"
        last = diverged.last_checkpoint
        evaluate = f" Evaluate that checkpoint with `train=false ckpt_path={last}`." if last else ""
        # Resuming would restore the optimizer's state, learning rate included: start again.
        return f"{diverged}{evaluate} Train again with a lower learning rate ({fix})."
    user = next((e for e in chain if isinstance(e, AeLabError)), None)
    if user is not None:
        return str(user)
    # Lightning rejects values when Hydra builds the Trainer or a callback (Hydra's message then
    # ends with `full_key: <node>`; a TypeError or ValueError too), some only when fitting.
    built = next((m[1] for e in chain if (m := re.search(r"full_key: (\S+)$", str(e)))), None)
    kinds = (
        (MisconfigurationException, TypeError, ValueError) if built else MisconfigurationException
    )
    lightning = next((e for e in chain if isinstance(e, kinds)), None)
    if lightning is not None:
        node = built or "trainer"
        why = str(lightning).rstrip(".")
        section = OmegaConf.select(cfg, node)
        section = section if isinstance(section, DictConfig) else DictConfig({})
        named = [f"{node}.{k}" for k in section if re.search(rf"\b{k}\b", why)]
        # Hydra's full_key may name a node of ours (model, data), not Lightning's.
        target = str(section.get("_target_", ""))
        who = "Lightning" if target.startswith("lightning.") else f"`{target or node}`"
        shown = ", ".join(_shown(cfg, k) for k in named) or f"{node}.*"
        gpu = ""
        if cfg.trainer.get("accelerator") in ("gpu", "cuda") or "CUDA" in why:
            gpu = (
                f" A GPU trainer (trainer=gpu) needs a GPU that PyTorch sees (here: "
                f"{torch.cuda.device_count()}); on the CPU use `trainer=default`."
            )
        return (
            f"{who} rejects a setting ({shown}): {why}. Fix it on the command line or in "
            f"conf/{node.split('.')[0]}/.{gpu}"
        )
    return None


# ---- Ctrl-C ------------------------------------------------------------------------------------
def interrupted_advice(stop: RunInterrupted) -> str:
    """What to run next: resume training, or (training had finished) evaluate the checkpoint."""
    args = ["python", "train.py"]
    if HydraConfig.initialized():  # the run's own overrides, so that the next run is the same
        task = HydraConfig.get().overrides.task
        drop = {"ckpt_path", "train"}
        args += [a for a in task if a.split("=", 1)[0].lstrip("+~") not in drop]
    last = stop.checkpoints / "last.ckpt"
    if stop.stage == "test":
        ckpt = stop.best or (str(last) if last.is_file() else None)
        if ckpt is None:
            return "Nothing was saved to evaluate: start the run again."
        command = shlex.join([*args, "train=false", f"ckpt_path={ckpt}"])
        return f"Training had finished; evaluate its checkpoint with:\n  {command}"
    if not last.is_file():
        return "No checkpoint yet (interrupted in the first epoch): start the run again."
    return f"Resume it from its last checkpoint with:\n  {shlex.join([*args, f'ckpt_path={last}'])}"


# ---- the run ------------------------------------------------------------------------------------
def run_cli(fn: Callable[[DictConfig], dict[str, Any]], cfg: DictConfig) -> dict[str, Any]:
    """Call `fn(cfg)` for one run; print a user's error as one paragraph on stderr and exit 2.

    In a Hydra multirun the error is raised instead (Hydra marks that job failed, runs the others
    and exits non-zero at the end) and a run without `logger.group` joins the sweep's group (the
    sweep folder's name, `multirun/2025-06-01/12-00-00-3fa2b1` -> `2025-06-01_12-00-00-3fa2b1`).
    With `cfg.result_file` the metrics, or the error, are also written there as JSON.
    """
    # A job started with `&` from a script inherits SIGINT ignored; Ctrl-C, `kill -INT` and the
    # grid (which stops its runs with SIGINT) must still end the run as an interrupted one.
    main_thread = threading.current_thread() is threading.main_thread()
    if main_thread and signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    # `mode` is None where a config was composed without a run (the compose API, tests).
    mode = HydraConfig.get().mode if HydraConfig.initialized() else None
    multirun = getattr(mode, "name", None) == "MULTIRUN"
    if multirun and cfg.get("logger") and "group" in cfg.logger and not cfg.logger.group:
        cfg.logger.group = "_".join(Path(HydraConfig.get().sweep.dir).parts[-2:])
    start = time.monotonic()
    try:
        result = fn(cfg)
    except RunInterrupted as stop:
        write_result(cfg, {"error": "interrupted", "status": "interrupted"}, start)
        if rank_zero_only.rank == 0:
            print(f"\n[ae-lab] interrupted. {interrupted_advice(stop)}", file=sys.stderr)
        # 128 + the signal number, the shell's code: 143 for SIGTERM, 130 for Ctrl-C (SIGINT)
        raise SystemExit(143 if stop.sigterm else 130) from None
    except KeyboardInterrupt:  # before Lightning took over (loading data, building the model)
        write_result(cfg, {"error": "interrupted", "status": "interrupted"}, start)
        print("\n[ae-lab] interrupted before training began: start the run again.", file=sys.stderr)
        raise SystemExit(130) from None
    except Exception as err:
        message = describe(err, cfg)
        write_result(cfg, {"error": message or f"{type(err).__name__}: {err}"}, start)
        if message is None:
            raise
        error_line(message)
        if multirun:
            raise AeLabError(message) from None
        sys.exit(2)
    write_result(cfg, result, start)
    if rank_zero_only.rank == 0:  # under DDP every process returns; one summary is enough
        print_summary(result)
    return result


def write_result(cfg: DictConfig, result: dict[str, Any], start: float) -> None:
    """The returned metrics and paths (or the error) as JSON in `cfg.result_file`, on rank 0."""
    if not cfg.get("result_file") or rank_zero_only.rank != 0:
        return
    status = result.get("status") or ("failed" if "error" in result else "ok")
    timing = {"seconds": time.monotonic() - start, "torch_threads": torch.get_num_threads()}
    result = result | {"status": status} | timing
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
