"""What the entrypoints share: user errors without tracebacks, and W&B agent arguments for Hydra."""

import re
import sys
from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig

from ae_lab.errors import AeLabError

# Arguments W&B's agent may add that Hydra must not see (`--_wandb=...`, `_wandb=...`).
_AGENT_PRIVATE = re.compile(r"^-{0,2}_wandb(=.*)?$")


def agent_argv_to_hydra(argv: list[str]) -> list[str]:
    """Turn what a W&B agent passes (`--model=unet`, `model=unet`, `--_wandb=...`) into Hydra overrides.

    `${args_no_hyphens}` already gives `key=value`; `${args}` gives `--key=value`: both work. Values
    with spaces or Hydra-special characters are quoted so Hydra's override parser keeps them whole.
    """
    out = [argv[0]]
    for arg in argv[1:]:
        if _AGENT_PRIVATE.match(arg):
            continue
        if arg.startswith("--") and "=" in arg and not arg.startswith("--config"):
            arg = arg[2:]
        key, sep, value = arg.partition("=")
        if sep and not arg.startswith("-") and _needs_quotes(value):
            value = "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
            arg = f"{key}={value}"
        out.append(arg)
    return out


def _needs_quotes(value: str) -> bool:
    if not value or value[0] in "'\"[{":
        return False
    return bool(re.search(r"[\s,()=:]", value)) and not value.startswith("${")


def run_cli(fn: Callable[[DictConfig], dict[str, Any]], cfg: DictConfig) -> dict[str, Any]:
    """Call `fn(cfg)`; print an `AeLabError` as one paragraph on stderr and exit with status 2."""
    try:
        result = fn(cfg)
    except AeLabError as err:
        print(f"\n[ae-lab] error: {err}\n", file=sys.stderr)
        sys.exit(2)
    print_summary(result)
    return result


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
