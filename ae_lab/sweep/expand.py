"""Check a sweep against the composed Hydra config and compose every grid point (no training)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from ae_lab.errors import AeLabError
from ae_lab.overrides import unknown_key_message
from ae_lab.sweep.spec import SweepSpec, point_overrides


@dataclass(frozen=True)
class SweepPoint:
    """One grid point: its parameter values, the overrides that train.py gets, the composed config."""

    index: int
    values: dict[str, Any]
    overrides: list[str]
    config: DictConfig


def config_groups(conf_dir: Path) -> dict[str, list[str]]:
    """Hydra config groups under `conf_dir` and their options: `{"model": ["ae", "unet", "vae"], ...}`."""
    return {
        folder.name: sorted(p.stem for p in folder.glob("*.yaml"))
        for folder in sorted(conf_dir.iterdir())
        if folder.is_dir() and any(folder.glob("*.yaml"))
    }


def apply_extra(spec: SweepSpec, extra: Sequence[str]) -> SweepSpec:
    """`spec` without the `value:` parameters that the command-line overrides `extra` replace;
    an override of a swept parameter is an error."""
    parameters = dict(spec.parameters)
    for key in _override_keys(spec.path, list(extra)):
        if len(parameters.get(key, ())) > 1:
            raise AeLabError(
                f"The extra override for `{key}` clashes with {spec.path}, which sweeps it over {parameters[key]}."
            )
        parameters.pop(key, None)
    return replace(spec, parameters=parameters)


def expand(spec: SweepSpec, conf_dir: Path, extra: Sequence[str] = ()) -> list[SweepPoint]:
    """Check every parameter against the Hydra config in `conf_dir`, then compose every point.

    `extra` are command-line overrides applied to every run; one that sets a swept parameter is an
    error, one that sets a `value:` parameter replaces it. Raises AeLabError naming the bad entry.
    Hydra's multirun composes each run only when it starts: this finds a bad point 7 before run 1.
    """
    spec = apply_extra(spec, extra)
    groups = config_groups(conf_dir)
    for key in [k for k in spec.parameters if k in groups]:
        bad = [v for v in spec.parameters[key] if v not in groups[key]]
        if bad:
            raise AeLabError(
                f"{spec.path}: parameter `{key}` has {bad}, which is not an option of the config "
                f"group conf/{key}/. Valid choices: {', '.join(groups[key])}."
            )
    out: list[SweepPoint] = []
    with initialize_config_dir(config_dir=str(conf_dir.resolve()), version_base="1.3"):
        for i, point in enumerate(spec.points()):
            overrides = point_overrides(point) + list(extra)
            try:
                out.append(SweepPoint(i, point, overrides, compose("config", overrides)))
            except Exception as err:
                error = err
                break
        else:
            return out
    # The same typo hint as train.py's (`Did you mean trainer.max_epochs=3?`), else Hydra's words.
    message = unknown_key_message(overrides, conf_dir) or f"{error}"
    choices = " ".join(f"{k}={point[k]}" for k in point if k in groups)
    raise AeLabError(
        f"{spec.path}: grid point {i} ({choices or 'default groups'}) does not give a valid Hydra "
        f"config: {message} Fix the parameter or the extra override it names; `+key=value` adds "
        "a new key on purpose."
    ) from error


def _override_keys(path: Path, overrides: list[str]) -> list[str]:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception as err:
        raise AeLabError(f"Cannot parse the extra overrides {overrides}: {err}") from err
    prefixes = [
        ("+" if o.is_add() else "++" if o.is_force_add() else "~" if o.is_delete() else "")
        for o in parsed
    ]
    return [prefix + o.key_or_group for prefix, o in zip(prefixes, parsed, strict=True)]
