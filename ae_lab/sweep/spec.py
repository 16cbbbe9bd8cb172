"""W&B sweep files (`sweeps/*.yaml`): load and check their structure.

The same file drives `wandb sweep` + `wandb agent` and `python -m ae_lab.sweep` (a Hydra
multirun); every parameter name
is a Hydra override path (`model`, `loss`, `trainer.max_epochs`), W&B's nested `parameters:`
blocks are flattened to dotted paths.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ae_lab.errors import AeLabError
from ae_lab.overrides import hydra_value

SWEEP_KEYS = (
    "program", "method", "metric", "parameters", "name", "description", "project", "entity",
    "command", "early_terminate", "run_cap",
)  # fmt: skip
SERVER_METHODS = ("random", "bayes")
# `${args_no_hyphens}` gives Hydra's `key=value`; `agent_argv_to_hydra` also accepts `--key=value`.
ARG_MACROS = ("${args_no_hyphens}", "${args}", "${args_override_hydra}")


@dataclass(frozen=True)
class SweepSpec:
    """A grid sweep: `parameters` maps each Hydra path to its values (`value:` -> one value)."""

    path: Path
    name: str
    method: str
    program: str
    parameters: dict[str, list[Any]]
    metric: dict[str, str] | None = None
    project: str | None = None

    def points(self) -> list[dict[str, Any]]:
        """Every combination, the last parameter varying fastest (W&B's grid order)."""
        keys = list(self.parameters)
        return [
            dict(zip(keys, combo, strict=True))
            for combo in itertools.product(*self.parameters.values())
        ]

    @property
    def varied(self) -> list[str]:
        """Parameters with more than one value."""
        return [key for key, values in self.parameters.items() if len(values) > 1]


def point_overrides(point: dict[str, Any]) -> list[str]:
    """`{"model": "ae", "data.categories": ["cable", "screw"]}` -> `["model=ae", "data.categories=[cable,screw]"]`."""
    return [f"{key}={hydra_value(value)}" for key, value in point.items()]


def sweep_overrides(parameters: dict[str, list[Any]]) -> list[str]:
    """The grid in Hydra's multirun syntax: `{"model": ["ae", "unet"]}` -> `["model=ae,unet"]`.
    Hydra expands it in the same order as `SweepSpec.points` (the last key varying fastest)."""
    return [
        f"{key}={','.join(hydra_value(v) for v in values)}" for key, values in parameters.items()
    ]


def load_sweep(path: str | Path) -> SweepSpec:
    """Read and check a sweep file's structure (not yet against the Hydra config).

    Raises AeLabError for anything a Hydra multirun cannot run: unknown top-level keys,
    `method: random|bayes` (these need W&B's sweep server), a program other than train.py,
    a `command` without an arguments macro, or a parameter without `value`/`values`.
    """
    path = Path(path)
    if not path.is_file():
        raise AeLabError(
            f"Sweep file not found: {path}. The sweep files live in sweeps/, e.g. sweeps/grid.yaml."
        )
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise AeLabError(f"{path} is not valid YAML: {err}") from err
    if not isinstance(raw, dict):
        raise AeLabError(f"{path} must be a mapping with `method`, `program` and `parameters`.")
    unknown = sorted(set(raw) - set(SWEEP_KEYS))
    if unknown:
        raise AeLabError(
            f"{path}: unknown top-level key(s) {', '.join(unknown)}. A W&B sweep file may use "
            f"{', '.join(SWEEP_KEYS)}; Hydra settings go under `parameters:`."
        )
    method = str(raw.get("method", ""))
    if method in SERVER_METHODS:
        raise AeLabError(
            f"{path}: `method: {method}` picks each run from the results so far, which needs W&B's "
            f"sweep server: run `wandb sweep {path}` and then `wandb agent <entity/project/sweep_id>` "
            "(online, after `wandb login`). The offline runner `python -m ae_lab.sweep` only runs "
            "`method: grid`."
        )
    if method != "grid":
        raise AeLabError(
            f"{path}: `method` must be grid (or random/bayes with a W&B server), got {method!r}."
        )
    program = str(raw.get("program", ""))
    if Path(program).name != "train.py":
        raise AeLabError(
            f"{path}: `program` must be train.py (the Hydra entrypoint), got {program!r}."
        )
    _check_command(path, raw.get("command"))
    metric = raw.get("metric")
    if metric is not None and (
        not isinstance(metric, dict)
        or "name" not in metric
        or metric.get("goal", "minimize") not in ("maximize", "minimize")
    ):
        raise AeLabError(
            f"{path}: `metric` must be {{name: <key, e.g. test/image_auroc>, goal: maximize|minimize}}."
        )
    if not isinstance(raw.get("parameters"), dict) or not raw["parameters"]:
        raise AeLabError(f"{path}: `parameters` must map Hydra paths to `value:` or `values:`.")
    return SweepSpec(
        path=path,
        name=str(raw.get("name") or path.stem),
        method=method,
        program=program,
        parameters=_flatten_parameters(path, raw["parameters"]),
        metric=metric,
        project=raw.get("project"),
    )


def _check_command(path: Path, command: Any) -> None:
    if command is None:
        return
    if not isinstance(command, list) or not any(str(c) in ARG_MACROS for c in command):
        raise AeLabError(
            f"{path}: `command` must pass the parameters as Hydra overrides: "
            "[${env}, ${interpreter}, ${program}, ${args_no_hyphens}]."
        )


def _flatten_parameters(path: Path, tree: dict[str, Any], prefix: str = "") -> dict[str, list[Any]]:
    flat: dict[str, list[Any]] = {}
    for name, entry in tree.items():
        key = f"{prefix}{name}"
        if not isinstance(entry, dict):
            raise AeLabError(
                f"{path}: parameter `{key}` must be a mapping: `{{value: x}}`, `{{values: [x, y]}}` "
                f"or nested `{{parameters: ...}}`, got {entry!r}."
            )
        if "parameters" in entry:
            if not isinstance(entry["parameters"], dict) or not entry["parameters"]:
                # An empty block would silently drop out of the grid (one default-size run).
                raise AeLabError(
                    f"{path}: `{key}.parameters` is empty; give it at least one setting, e.g. "
                    f"`{key}: {{parameters: {{latent_dim: {{values: [64, 128]}}}}}}`, or remove `{key}`."
                )
            flat.update(_flatten_parameters(path, entry["parameters"], f"{key}."))
        elif "values" in entry:
            values = entry["values"]
            if not isinstance(values, list) or not values:
                raise AeLabError(
                    f"{path}: `{key}.values` must be a non-empty list, got {values!r}."
                )
            flat[key] = values
        elif "value" in entry:
            flat[key] = [entry["value"]]
        else:
            raise AeLabError(
                f"{path}: parameter `{key}` has {sorted(entry)}; a grid needs `value:` or `values:` "
                "(distributions such as min/max need `method: random|bayes` and W&B's sweep server)."
            )
    return flat


def find_repo_root(sweep_file: Path) -> Path:
    """The folder holding train.py and conf/: above the sweep file, else above this package."""
    for start in (sweep_file.resolve().parent, Path(__file__).resolve().parent):
        for folder in (start, *start.parents):
            if (folder / "train.py").is_file() and (folder / "conf").is_dir():
                return folder
    raise AeLabError(f"Cannot find the ae-lab repository (train.py and conf/) above {sweep_file}.")
