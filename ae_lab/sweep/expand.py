"""Check a sweep against the composed Hydra config and compose every grid point (no training)."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from ae_lab.errors import AeLabError
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
    extra_keys = _override_keys(spec.path, list(extra))
    spec = apply_extra(spec, extra)
    parameters = spec.parameters
    groups = config_groups(conf_dir)
    for key, values in parameters.items():
        if key in groups:
            bad = [v for v in values if not isinstance(v, str) or v not in groups[key]]
            if bad:
                raise AeLabError(
                    f"{spec.path}: parameter `{key}` has {bad}, which is not an option of the config "
                    f"group conf/{key}/. Valid choices: {', '.join(groups[key])}."
                )
    out = []
    with initialize_config_dir(config_dir=str(conf_dir.resolve()), version_base="1.3"):
        for i, point in enumerate(spec.points()):
            overrides = point_overrides(point) + list(extra)
            try:
                cfg = compose(config_name="config", overrides=overrides)
            except Exception:
                # Name the bad parameter and the valid settings rather than Hydra's message.
                choices = tuple(f"{k}={point[k]}" for k in point if k in groups)
                choices += tuple(o for o, k in zip(extra, extra_keys, strict=True) if k in groups)
                base = _compose(spec, list(choices), "the group choices " + " ".join(choices))
                keys = {k: "parameter" for k in point if k not in groups}
                keys |= {k: "extra override" for k in extra_keys if k not in groups}
                _check_paths(spec, base, keys, choices)
                cfg = _compose(spec, overrides, f"grid point {i}")
            out.append(SweepPoint(i, point, overrides, cfg))
    return out


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


def _compose(spec: SweepSpec, overrides: list[str], what: str) -> DictConfig:
    try:
        return compose(config_name="config", overrides=overrides)
    except Exception as err:
        raise AeLabError(
            f"{spec.path}: {what} does not give a valid Hydra config ({' '.join(overrides)}): "
            f"{err}. Fix the parameter or the extra override it names."
        ) from err


def _check_paths(
    spec: SweepSpec, cfg: DictConfig, keys: dict[str, str], choices: tuple[str, ...]
) -> None:
    """`keys` maps each dotted path to where it comes from ("parameter", "extra override")."""
    missing = object()
    for key, source in keys.items():
        if key.startswith(("+", "~", "hydra.")):  # `+key` adds a new key on purpose
            continue
        if OmegaConf.select(cfg, key, default=missing, throw_on_missing=False) is not missing:
            continue
        paths = _all_paths(OmegaConf.to_container(cfg, resolve=False))
        near = difflib.get_close_matches(key, paths, n=3, cutoff=0.6)
        parent = key.rpartition(".")[0]
        siblings = [p.rpartition(".")[2] for p in paths if p.rpartition(".")[0] == parent]
        hint = f" Did you mean {', '.join(near)}?" if near else ""
        where = (
            f" Settings under `{parent or '(top level)'}`: {', '.join(siblings)}."
            if siblings
            else ""
        )
        raise AeLabError(
            f"{spec.path}: {source} `{key}` is not a setting of the composed config "
            f"({' '.join(choices) or 'defaults'}).{hint}{where} To add a new key on purpose, "
            f"write `+{key}`."
        )


def _all_paths(tree: Any, prefix: str = "") -> list[str]:
    if not isinstance(tree, dict):
        return []
    out = []
    for key, value in tree.items():
        path = f"{prefix}{key}"
        out += [path, *_all_paths(value, f"{path}.")]
    return out
