"""What the entrypoints share: user errors without tracebacks, W&B agent arguments for Hydra,
and what a run of a Hydra multirun needs (its own folder, the sweep's W&B group, a result file)."""

import ast
import functools
import json
import re
import secrets
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ae_lab.errors import AeLabError
from ae_lab.flatten import flatten as flatten_dict  # one implementation, with the analysis

# `${ae_lab.uid:}` in conf/config.yaml: a random suffix for the run (and sweep) folder, so that
# two runs started in the same second never share one. Cached: one value per composed config,
# and Hydra copies the cache into every job of a multirun, so the sweep folder is one folder.
OmegaConf.register_new_resolver("ae_lab.uid", lambda: secrets.token_hex(3), use_cache=True)

# What `wandb agent` sets for the runs it starts (wandb/wandb_agent.py, Agent._command_run).
AGENT_ENV = ("WANDB_SWEEP_ID", "WANDB_SWEEP_PARAM_PATH")

# Arguments W&B's agent may add that Hydra must not see (`--_wandb=...`, `_wandb=...`).
_AGENT_PRIVATE = re.compile(r"^-{0,2}_wandb(=.*)?$")
# Hydra's own `--flag=value` options: kept as they are, never turned into overrides.
_HYDRA_FLAGS = frozenset(
    (
        "--config-path", "--config-dir", "--config-name", "--cfg", "--package", "--info",
        "--resolve", "--run", "--multirun", "--help", "--hydra-help", "--version",
        "--shell-completion", "--experimental-rerun",
    )
)  # fmt: skip


def agent_argv_to_hydra(argv: list[str]) -> list[str]:
    """Turn what a W&B agent passes into Hydra overrides; `argv[0]` is kept.

    The agent renders each parameter as `f"{name}={value}"` (`${args_no_hyphens}`; `${args}` adds
    `--`), so values arrive in Python's spelling: `None`, `['cable', 'screw']`, `{'latent_dim': 64}`
    (W&B's nested parameters) and `one string` (one argv item with a space). Lists and None are
    rewritten in Hydra's grammar, dicts become one dotted override per leaf (`model.latent_dim=64`),
    strings Hydra would misread are quoted; `True`/`False` and numbers already parse.
    """
    out = [argv[0]]
    for arg in argv[1:]:
        if _AGENT_PRIVATE.match(arg):
            continue
        if arg.startswith("--") and "=" in arg and arg.split("=", 1)[0] not in _HYDRA_FLAGS:
            arg = arg[2:]
        key, sep, text = arg.partition("=")
        if not sep or arg.startswith("-"):  # Hydra flags (`-m`, `--cfg job`) and bare words
            out.append(arg)
            continue
        out.extend(f"{k}={v}" for k, v in _agent_value(key, text))
    return out


def launched_by_wandb_agent(environ: Mapping[str, str]) -> bool:
    """True when `wandb agent` started this process (it sets the sweep id and parameter file)."""
    return all(environ.get(name) for name in AGENT_ENV)


def hydra_argv(argv: list[str], environ: Mapping[str, str]) -> list[str]:
    """The command line for Hydra: the agent's arguments translated, anyone else's untouched
    (so Hydra's own syntax, `-m model=ae,unet`, `range(1,4)`, `glob(*)`, reaches Hydra)."""
    return agent_argv_to_hydra(argv) if launched_by_wandb_agent(environ) else list(argv)


def _agent_value(key: str, text: str) -> list[tuple[str, str]]:
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        value = text  # plain words (`unet`), paths, interpolations, Hydra-style `[a,b]`
    else:
        if isinstance(value, dict):
            return [(k, hydra_value(v)) for k, v in flatten_dict(value, key).items()]
        if isinstance(value, list) or value is None:
            return [(key, hydra_value(value))]
        if isinstance(value, bool | int | float):  # str() of these is valid Hydra already
            return [(key, text)]
        value = text  # a quoted string or `1,2` (a tuple to Python, a sweep to Hydra)
    return [(key, text if _parses_as_single_value(text) else _quote(value))]


def hydra_value(value: Any) -> str:
    """Render a YAML/Python value as the right-hand side of a Hydra override.

    `["cable", "screw"]` -> `[cable,screw]`, `None` -> `null`, `True` -> `true`, `"a b"` -> `'a b'`;
    strings Hydra would read as something else (`"1"`, `"null"`, `"a,b"`) are quoted.
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return value if _parses_as_string(value) else _quote(value)
    if isinstance(value, list | tuple):
        return "[" + ",".join(hydra_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{hydra_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {value!r} ({type(value).__name__}) as a Hydra override value")


@functools.cache
def _override_parser() -> Any:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create()


def _parse_value(text: str) -> Any:
    """The parsed override (or None when Hydra rejects `x=<text>` or reads it as a sweep)."""
    try:
        override = _override_parser().parse_overrides([f"x={text}"])[0]
    except Exception:  # Hydra's OverrideParseException and ANTLR errors
        return None
    return None if override.is_sweep_override() else override


def _parses_as_single_value(text: str) -> bool:
    return _parse_value(text) is not None


def _parses_as_string(text: str) -> bool:
    override = _parse_value(text)
    return override is not None and override.value() == text


def _quote(text: str) -> str:
    # Hydra unescapes backslashes only before a quote or at the end of a quoted string.
    text = re.sub(r"(\\*)'", lambda m: m.group(1) * 2 + "\\'", text)
    text = re.sub(r"(\\+)$", lambda m: m.group(1) * 2, text)
    return f"'{text}'"


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


def user_error(err: BaseException) -> AeLabError | None:
    """The `AeLabError` behind `err`: itself, or the one a Hydra-instantiated constructor raised."""
    from hydra.errors import InstantiationException

    if isinstance(err, InstantiationException):
        err = err.__cause__
    return err if isinstance(err, AeLabError) else None


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
