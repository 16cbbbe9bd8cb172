"""What the Hydra config needs from the package: its resolvers, registered when `ae_lab` is
imported, and `flatten`, the way W&B spells nested config and summary keys."""

import re
import secrets
from typing import Any

from omegaconf import OmegaConf


def short_name(name: Any) -> str:
    """The run name as one short folder name: `run_name=../../x` or a 300-character name would
    otherwise escape the output layout or exceed the file-name limit."""
    return re.sub(r"[^\w.=+-]+", "_", str(name)).strip("._")[:80] or "run"


def register_resolvers() -> None:
    """`${ae_lab.uid:}`: a random suffix for the run (and sweep) folder, so that two runs started
    in the same second never share one. Cached: one value per composed config, and Hydra copies
    the cache into every job of a multirun, so the sweep folder is one folder.
    `${ae_lab.name:${run_name}}`: `short_name` of the run name."""
    OmegaConf.register_new_resolver(
        "ae_lab.uid", lambda: secrets.token_hex(3), use_cache=True, replace=True
    )
    OmegaConf.register_new_resolver("ae_lab.name", short_name, replace=True)


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{"a": {"b": 1}}` -> `{"a.b": 1}` (with `prefix`: `{"prefix.a.b": 1}`), the way W&B spells
    nested config and summary entries. An empty dict stays a value (`{"a": {}}`)."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            flat.update(flatten(value, path))
        else:
            flat[path] = value
    return flat
