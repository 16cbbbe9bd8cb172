"""The grid: wall time of a small grid with the offline runner, `--jobs 1` against `--jobs 2`.

    python bench/grid.py [--quick] [--rounds 2]

sweeps/smoke.yaml (W&B offline) cut down to 4 runs (ae, unet x l2, ssim_l1), or 2 runs (ae x l1,
l2) with --quick, so that two interleaved rounds of both variants fit in a few minutes.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
from pathlib import Path

import common
import yaml

SMOKE = common.REPO / "sweeps" / "smoke.yaml"


def sweep_file(quick: bool, tmp: Path) -> Path:
    """A copy of sweeps/smoke.yaml with fewer models and losses (see the module docstring)."""
    spec = yaml.safe_load(SMOKE.read_text())
    models, losses = (["ae"], ["l1", "l2"]) if quick else (["ae", "unet"], ["l2", "ssim_l1"])
    spec["parameters"]["model"] = {"values": models}
    spec["parameters"]["loss"] = {"values": losses}
    out = tmp / f"smoke_{len(models) * len(losses)}runs.yaml"
    out.write_text(yaml.safe_dump(spec, sort_keys=False))
    return out


def prepare(sweep: Path, env: dict[str, str]) -> int:
    """Generate the grid's data once, untimed (else the first run of each round pays it); -> runs."""
    import hydra
    from hydra import compose, initialize_config_dir

    from ae_lab.sweep import hydra_value, load_sweep

    os.environ["AE_LAB_CACHE"] = env["AE_LAB_CACHE"]
    params = load_sweep(sweep)["parameters"]
    with initialize_config_dir(str(common.REPO / "conf"), version_base="1.3"):
        cfg = compose("config", [f"{k}={hydra_value(v[0])}" for k, v in params.items()])
    hydra.utils.instantiate(cfg.data).prepare_data()
    return math.prod(map(len, params.values()))


def run(quick: bool, rounds: int) -> str:
    tmp = Path(tempfile.mkdtemp(prefix="bench-grid-"))
    env = common.offline_env(tmp / "wandb") | {"AE_LAB_CACHE": str(common.CACHE / "grid")}
    (tmp / "wandb").mkdir()
    sweep = sweep_file(quick, tmp)
    n_runs = prepare(sweep, env)
    counter = iter(range(10**6))

    def grid(jobs: int):
        def go() -> float:
            out = tmp / f"out{next(counter)}"
            argv = ["-m", "ae_lab.sweep", str(sweep), "--jobs", str(jobs), "--out-dir", str(out)]
            return common.run_child([sys.executable, *argv], env)[0]

        return go

    times = common.interleaved({"--jobs 1": grid(1), "--jobs 2": grid(2)}, rounds)
    one = common.median(times["--jobs 1"])
    rows = [
        [k, common.median(v), one / common.median(v), n_runs / common.median(v) * 60]
        for k, v in times.items()
    ]
    head = (
        f"Grid: {n_runs} runs of {sweep.name} with `python -m ae_lab.sweep` (W&B offline); "
        f"median of {rounds} interleaved rounds; {len(os.sched_getaffinity(0))} cores, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    headers = ["runner", "wall seconds", "speed-up vs --jobs 1", "runs per minute"]
    return head + "\n\n" + common.table(headers, rows)


def main(argv: list[str] | None = None) -> str:
    return common.simple_main(__doc__, run, argv, quick=1, full=2)


if __name__ == "__main__":
    main()
