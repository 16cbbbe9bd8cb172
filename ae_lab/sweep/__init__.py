"""W&B sweep files and their offline run as a Hydra multirun (`python -m ae_lab.sweep sweeps/grid.yaml`)."""

from ae_lab.sweep.expand import SweepPoint, apply_extra, config_groups, expand
from ae_lab.sweep.spec import (
    SweepSpec,
    find_repo_root,
    load_sweep,
    point_overrides,
    sweep_overrides,
)

__all__ = [
    "SweepPoint",
    "SweepSpec",
    "apply_extra",
    "config_groups",
    "expand",
    "find_repo_root",
    "load_sweep",
    "point_overrides",
    "sweep_overrides",
]
