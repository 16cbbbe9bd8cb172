"""What the entrypoints share: user errors without tracebacks, and W&B agent arguments for Hydra."""

import ast
import functools
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from ae_lab.errors import AeLabError

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


def flatten_dict(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{"a": {"b": 1}}` -> `{"a.b": 1}` (with `prefix`: `{"prefix.a.b": 1}`)."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            flat.update(flatten_dict(value, path))
        else:
            flat[path] = value
    return flat


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
    """Call `fn(cfg)`; print an `AeLabError` as one paragraph on stderr and exit with status 2."""
    from hydra.errors import InstantiationException

    try:
        result = fn(cfg)
    except (AeLabError, InstantiationException) as err:
        # Hydra wraps errors raised in constructors: unwrap ours, re-raise anything else.
        user_error = err if isinstance(err, AeLabError) else err.__cause__
        if not isinstance(user_error, AeLabError):
            raise
        print(f"\n[ae-lab] error: {user_error}\n", file=sys.stderr)
        sys.exit(2)
    if is_rank_zero():  # under DDP every process returns; one summary is enough
        print_summary(result)
    return result


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
