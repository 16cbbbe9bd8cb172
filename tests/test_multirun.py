"""Hydra's multirun and launchers run grids of train.py: every run gets its own folder, and the
runs of a sweep share one W&B group."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

import ae_lab.training  # noqa: F401  (registers the `${ae_lab.uid:}` resolver of conf/config.yaml)
from tests.compose import CONF_DIR, tiny_overrides
from tests.test_sweeps import inspect_run

REPO = Path(__file__).resolve().parents[1]


def test_two_runs_started_in_the_same_second_get_their_own_folders():
    """Same model, loss and latent size, composed within one second: two run folders."""

    def run_and_sweep_dir() -> tuple[str, str]:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose(config_name="config", return_hydra_config=True)
        run, sweep = str(cfg.hydra.run.dir), str(cfg.hydra.sweep.dir)
        assert str(cfg.hydra.sweep.dir) == sweep  # one value per config: one sweep folder
        return run, sweep

    (first, first_sweep), (second, second_sweep) = run_and_sweep_dir(), run_and_sweep_dir()
    assert first != second and first_sweep != second_sweep
    assert Path(first).parent == Path(second).parent  # same date folder, same name pattern
    assert first.rsplit("-", 1)[1] == first_sweep.rsplit("-", 1)[1]  # the suffix


def tiny_multirun(tiny_mvtec: Path, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    skip = ("output_dir=", "logger=", "data.cache_dir=")
    overrides = [
        o for o in tiny_overrides(tiny_mvtec, tmp_path, ["widget"]) if not o.startswith(skip)
    ]
    argv = [sys.executable, "train.py", "-m", "model=ae,unet", *overrides, *extra,
            f"hydra.sweep.dir={tmp_path / 'sweep'}", "media.n_images=4", "media.tsne_test=false",
            "result_file=${hydra:runtime.output_dir}/result.json"]  # fmt: skip
    env = {**os.environ, "WANDB_DIR": str(tmp_path), "WANDB_MODE": "offline"}
    return subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_submitit_launcher_runs_two_tiny_jobs_in_one_w_and_b_group(tiny_mvtec, tmp_path):
    """The launcher that sends the grid to SLURM (`submitit_slurm`), run locally: one submitit job
    (process, log files) per run, each with its own folder; the runs share one W&B group."""
    proc = tiny_multirun(
        tiny_mvtec, tmp_path, "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10",
        "torch.num_threads=1",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    folders = sorted((tmp_path / "sweep").glob("*/result.json"))
    assert [p.parent.name for p in folders] == ["0-ae-ssim-z8", "1-unet-ssim-z8"]
    results = [json.loads(p.read_text()) for p in folders]
    assert [r["status"] for r in results] == ["ok", "ok"]
    assert all(0.0 <= r["test/image_auroc"] <= 1.0 for r in results)
    jobs = [p for p in (tmp_path / "sweep/.submitit").iterdir() if p.name.isdigit()]
    assert len(jobs) == 2
    runs = [inspect_run(Path(r["wandb_dir"])) for r in results]
    assert {summary["name"] for summary, _ in runs} == {"ae-ssim-z8", "unet-ssim-z8"}
    assert len({run["run_group"] for _, run in runs}) == 1 and runs[0][1]["run_group"]
