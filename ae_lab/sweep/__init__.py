"""W&B sweep files, run offline as one Hydra multirun: `python -m ae_lab.sweep sweeps/grid.yaml`."""

from ae_lab.sweep.expand import SweepPoint, apply_extra, expand
from ae_lab.sweep.spec import SweepSpec, load_sweep, point_overrides, sweep_overrides

__all__ = [
    "SweepPoint", "SweepSpec", "apply_extra", "expand", "load_sweep", "point_overrides",
    "sweep_overrides",
]  # fmt: skip
