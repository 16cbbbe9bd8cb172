"""Hydra overrides on the command line: values written as overrides (`hydra_value`), a W&B agent's
arguments translated into them (`hydra_argv`), and a mistyped key caught before Hydra sees it.

Hydra's own hint for an unknown key is `+trainer.max_epoch=1`, which adds the typo to the config
and fails again later (Lightning has no `max_epoch`); `unknown_key_message` names the nearest
settings instead.
"""

from __future__ import annotations

import ast
import difflib
import functools
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ae_lab.flatten import flatten as flatten_dict  # one implementation, with the analysis

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


def unknown_key_message(
    argv: list[str], config_dir: str | Path, config_name: str = "config"
) -> str | None:
    """One paragraph about the first override in `argv` whose key is not in the composed config
    (with the closest existing keys), or None when every key exists or the check does not apply
    (sweeps, `+`/`~` overrides, `hydra.*` keys, anything Hydra itself will report better)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser

    args = [a for a in argv if "=" in a and not a.startswith("-")]
    try:
        overrides = OverridesParser.create().parse_overrides(args)
    except Exception:  # Hydra's parse errors are clear enough
        return None
    if not overrides or any(o.is_sweep_override() for o in overrides):
        return None
    config_dir = Path(config_dir).resolve()
    groups = {p.name for p in config_dir.iterdir() if p.is_dir()}
    choices, keys = [], []
    for override, text in zip(overrides, args, strict=True):
        key = override.key_or_group
        if override.is_add() or override.is_delete() or key.split(".")[0] == "hydra":
            continue
        is_group = override.package is not None or (key.split("/")[0] in groups and "." not in key)
        (choices if is_group else keys).append((key, text))
    if not keys:
        return None
    try:
        with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=[text for _, text in choices])
    except Exception:  # an unknown group option: Hydra lists the options itself
        return None
    for key, text in keys:
        missing = _first_missing(cfg, key.split("."))
        if missing is None:
            continue
        parts = key.split(".")
        parent = OmegaConf.select(cfg, ".".join(parts[:missing])) if missing else cfg
        siblings = [str(k) for k in parent]
        close = difflib.get_close_matches(parts[missing], siblings, n=3, cutoff=0.6)
        value = text.split("=", 1)[1]
        where = f"`{'.'.join(parts[:missing])}`" if missing else "the config"
        if close:
            spelled = [".".join([*parts[:missing], c, *parts[missing + 1 :]]) for c in close]
            # `traner.max_epochs`: `trainer.max_epochs` exists, `train.max_epochs` does not.
            spelled = [k for k in spelled if _first_missing(cfg, k.split(".")) is None] or spelled
            hint = "Did you mean " + " or ".join(f"`{k}={value}`" for k in spelled) + "?"
        else:
            hint = f"Settings of {where}: {', '.join(siblings)}."
        return (
            f"`{key}` is not a setting (no `{parts[missing]}` in {where}), so `{text}` cannot be "
            f"applied. {hint} `python train.py --cfg job` prints every setting."
        )
    return None


def _first_missing(cfg: DictConfig, parts: list[str]) -> int | None:
    """Index of the first path part that is not in the config, or None (the path exists, or it
    goes through a list or a null value that a `+` override or Hydra has to handle)."""
    node = cfg
    for i, part in enumerate(parts):
        if not isinstance(node, DictConfig):
            return None
        if part not in node:
            return i
        node = node._get_node(part)
    return None


def exit_on_unknown_key(argv: list[str], config_dir: str | Path) -> None:
    """Print `unknown_key_message` as one paragraph and exit with status 2, if there is one."""
    message = unknown_key_message(argv, config_dir)
    if message:
        print(f"\n[ae-lab] error: {message}\n", file=sys.stderr)
        sys.exit(2)
