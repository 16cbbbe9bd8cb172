"""What the Hydra config needs from the package: its resolvers, registered when `ae_lab` is
imported, `flatten`, the way W&B spells nested config and summary keys, and the check that the
run's output folder can be made (before Hydra makes it)."""

import os
import re
import secrets
import sys
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from ae_lab.errors import error_line


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


def check_output_root(argv: list[str]) -> None:
    """Exit with one paragraph when the folder Hydra creates for the run cannot be made: the
    root from `AE_LAB_OUTPUTS`, `hydra.run.dir=` or `hydra.sweep.dir=` is a file or read-only."""
    dirs = [a.split("=", 1) for a in argv if a.startswith(("hydra.run.dir=", "hydra.sweep.dir="))]
    for key, value in [("AE_LAB_OUTPUTS", os.environ.get("AE_LAB_OUTPUTS")), *dirs]:
        path = Path(value or ".")
        while not path.exists():  # the first folder that exists is where Hydra creates its own
            path = path.parent
        if not path.is_dir() or not os.access(path, os.W_OK):
            what = "not a folder" if not path.is_dir() else "not writable"
            error_line(
                f"{key}={value} cannot hold the run's folder: {path} is {what}. Point {key} to a "
                f"folder you can write to, e.g. {key}=outputs/mine."
            )
            sys.exit(2)
