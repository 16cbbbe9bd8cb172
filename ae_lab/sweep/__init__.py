"""W&B sweep files and the offline grid runner (`python -m ae_lab.sweep sweeps/grid.yaml`)."""

from ae_lab.sweep.expand import SweepPoint, config_groups, expand
from ae_lab.sweep.spec import SweepSpec, find_repo_root, load_sweep, point_overrides

__all__ = [
    "SweepPoint",
    "SweepSpec",
    "config_groups",
    "expand",
    "find_repo_root",
    "load_sweep",
    "point_overrides",
]
