"""Catch a mistyped setting on the command line (`trainer.max_epoch=1`) before Hydra does.

Hydra's own hint for an unknown key is `+trainer.max_epoch=1`, which adds the typo to the config
and fails again later (Lightning has no `max_epoch`); here the message names the nearest settings.
"""

from __future__ import annotations

import difflib
import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf


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
