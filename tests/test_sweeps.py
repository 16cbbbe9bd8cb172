"""Sweep files compose for every grid point; the offline runner validates, plans and runs them."""

import itertools
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from ae_lab.errors import AeLabError
from ae_lab.sweep import expand, load_sweep
from ae_lab.sweep.runner import PlannedRun, RunOutcome, summary_table

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
SWEEP_FILES = sorted((REPO / "sweeps").glob("*.yaml"))
MODELS, LOSSES = ["ae", "unet"], ["l1", "l2", "ssim", "ssim_l1"]


def write_sweep(tmp_path: Path, parameters: dict[str, Any], **top: Any) -> Path:
    raw = {"name": "t", "program": "train.py", "method": "grid", "parameters": parameters, **top}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize("path", SWEEP_FILES, ids=lambda p: p.name)
def test_every_point_of_every_sweep_file_composes(path: Path):
    spec = load_sweep(path)
    points = expand(spec, CONF)
    assert len(points) == len(list(itertools.product(*spec.parameters.values())))
    for point in points:
        raw = OmegaConf.to_container(point.config, resolve=False)  # `${...}` values as written
        for key, value in point.values.items():
            if key in ("model", "loss"):
                assert point.config[key].name == value
            elif key not in ("data", "trainer"):
                node = raw
                for part in key.split("."):
                    node = node[part]
                assert node == value, key
    assert len({p.config.run_name for p in points}) == len(points), "runs must be told apart"


def test_grid_files_are_architecture_x_loss():
    grid, grid_all, smoke = (
        load_sweep(REPO / f"sweeps/{n}.yaml") for n in ("grid", "grid_all", "smoke")
    )
    pairs = {(p["model"], p["loss"]) for p in grid.points()}
    assert pairs == set(itertools.product(MODELS, LOSSES)) and len(grid.points()) == 8
    assert {(p["model"], p["loss"]) for p in smoke.points()} == pairs
    assert len(grid_all.points()) == 12 and {p["model"] for p in grid_all.points()} == {
        *MODELS,
        "vae",
    }
    assert {k: v for k, v in grid_all.parameters.items() if k != "model"} == {
        k: v for k, v in grid.parameters.items() if k != "model"
    }
    assert grid.varied == ["model", "loss"]
    for spec in (grid, grid_all, smoke):
        assert spec.metric == {"name": "test/image_auroc", "goal": "maximize"}
        assert spec.project == "tarea05"
    latent = load_sweep(REPO / "sweeps/latent.yaml")
    assert latent.varied == ["model.latent_dim"] and latent.parameters["model.latent_dim"] == [
        32,
        64,
        128,
        256,
    ]


@pytest.mark.parametrize(
    ("parameters", "top", "match"),
    [
        (
            {"trainer.max_epoch": {"value": 3}},
            {},
            r"trainer\.max_epoch`.*Did you mean trainer\.max_epochs",
        ),
        (
            {"model": {"values": ["ae", "transformer"]}},
            {},
            r"\['transformer'\].*Valid choices: ae, unet, vae",
        ),
        (
            {"loss": {"value": "ssim"}, "loss.fn.alpha": {"value": 0.5}},
            {},
            r"loss\.fn\.alpha.*loss=ssim",
        ),
        (
            {"model": {"values": ["ae"]}},
            {"method": "random"},
            r"method: random.*sweep server.*wandb agent",
        ),
        ({"model": {"values": ["ae"]}}, {"method": "bayes"}, r"method: bayes.*sweep server"),
        ({"model": {"values": ["ae"]}}, {"program": "main.py"}, r"`program` must be train\.py"),
        ({"optimizer.lr": {"min": 1e-4, "max": 1e-2}}, {}, r"optimizer\.lr.*random\|bayes"),
        ({"model": {"values": ["ae"]}}, {"paramters": {}}, r"unknown top-level key\(s\) paramters"),
        ({"model": ["ae", "unet"]}, {}, r"parameter `model` must be a mapping"),
        ({"model": {"values": ["ae"]}}, {"command": ["python", "train.py"]}, r"args_no_hyphens"),
    ],
)
def test_invalid_sweeps_are_refused_before_anything_runs(tmp_path, parameters, top, match):
    with pytest.raises(AeLabError, match=match):
        expand(load_sweep(write_sweep(tmp_path, parameters, **top)), CONF)


def test_nested_parameters_and_extra_overrides(tmp_path):
    path = write_sweep(
        tmp_path,
        {
            "model": {"parameters": {"latent_dim": {"values": [8, 16]}}},
            "trainer.max_epochs": {"value": 30},
        },
    )
    spec = load_sweep(path)
    assert spec.parameters == {"model.latent_dim": [8, 16], "trainer.max_epochs": [30]}
    points = expand(spec, CONF, ["trainer.max_epochs=2", "loss=ssim"])
    assert [p.config.model.latent_dim for p in points] == [8, 16]
    assert all(p.config.trainer.max_epochs == 2 and p.config.loss.name == "ssim" for p in points)
    assert "trainer.max_epochs=30" not in points[0].overrides  # the extra override replaces it
    with pytest.raises(AeLabError, match="clashes"):
        expand(spec, CONF, ["model.latent_dim=4"])


def test_dry_run_prints_one_command_per_grid_point(tmp_path):
    out_dir = tmp_path / "out"
    cmd = [sys.executable, "-m", "ae_lab.sweep", "sweeps/grid.yaml", "--dry-run", "--jobs", "2",
           "--group", "g1", "--out-dir", str(out_dir)]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 8
    pairs = set()
    parser = OverridesParser.create()
    for line in lines:
        words = shlex.split(line)
        env = dict(w.split("=", 1) for w in words[:2])
        assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"]
        assert words[2:4] == [sys.executable, "train.py"]
        values = {o.key_or_group: o.value() for o in parser.parse_overrides(words[4:])}
        assert values["logger.group"] == "g1" and values["torch.num_threads"] == int(
            env["OMP_NUM_THREADS"]
        )
        assert Path(values["result_file"]).parent == Path(values["hydra.run.dir"])
        assert Path(values["hydra.run.dir"]).parent == out_dir / "g1"
        pairs.add((values["model"], values["loss"]))
    assert pairs == set(itertools.product(MODELS, LOSSES))
    assert not out_dir.exists()


def test_summary_table_reports_status_time_and_best_metric(tmp_path):
    def outcome(i: int, code: int | None, auroc: float | None) -> RunOutcome:
        run = PlannedRun(
            i, 3, f"0{i}-ae-l{i}", [], {}, tmp_path / f"{i}.log", tmp_path / f"{i}.json"
        )
        result = {} if auroc is None else {"test/image_auroc": auroc}
        return RunOutcome(run, code, 65.0 + i, code is not None, result)

    table = summary_table(
        [outcome(0, 0, 0.7), outcome(1, 1, None), outcome(2, 0, 0.9)], "test/image_auroc"
    )
    rows = table.splitlines()
    assert rows[0].split() == ["#", "run", "status", "time", "test/image_auroc"]
    assert rows[2].split() == ["1/3", "00-ae-l0", "ok", "1m05s", "0.7000"]
    assert rows[3].split() == ["2/3", "01-ae-l1", "failed", "(1)", "1m06s", "-"]
    assert rows[4].split() == ["3/3", "02-ae-l2", "ok", "1m07s", "0.9000", "*"]


def inspect_run(run_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """`wandb leet inspect` of an offline run folder: (its summary object, its `run` record)."""
    wandb_cli = [str(Path(sys.executable).parent / "wandb"), "leet", "inspect", "--json"]
    out = subprocess.run(
        [*wandb_cli, "--summary", str(run_dir)], capture_output=True, text=True, check=True
    )
    records = subprocess.run([*wandb_cli, str(run_dir)], capture_output=True, text=True, check=True)
    runs = [
        r["run"] for r in map(json.loads, records.stdout.splitlines()) if r.get("type") == "run"
    ]
    return json.loads(out.stdout), runs[0]


AGENT_RUN = """
import sys
from lightning.pytorch.loggers import WandbLogger
import hydra, wandb
from ae_lab.training import hyperparams
from tests.compose import compose_config
cfg = compose_config(["model=unet", "model.latent_dim=64"])
logger = hydra.utils.instantiate(cfg.logger)
logger.log_hyperparams(hyperparams(cfg, logger))
print(logger.experiment.id, logger.experiment.name)
wandb.finish()
"""


def test_agent_started_run_joins_the_sweep_run_and_keeps_the_config(tmp_path):
    """What `wandb agent` sets up (run id, sweep id, parameter file), offline: the logger's run is
    the agent's run, and the locked sweep keys do not hide the nested Hydra config."""
    params = tmp_path / "sweep-params.yaml"
    params.write_text(
        yaml.safe_dump({"model": {"value": "unet"}, "model.latent_dim": {"value": 64}})
    )
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path), "WANDB_SWEEP_ID": "sw1",
           "WANDB_RUN_ID": "agentrun1", "WANDB_SWEEP_PARAM_PATH": str(params)}  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-c", AGENT_RUN],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split()[-2:] == ["agentrun1", "unet-l2-z64"]
    (run_dir,) = (tmp_path / "wandb").glob("offline-run-*-agentrun1")
    summary, run = inspect_run(run_dir)
    assert run["sweep_id"] == "sw1" and summary["name"] == "unet-l2-z64"
    config = summary["config"]
    assert config["model"] == "unet"  # as the sweep set it
    assert config["model.name"] == "unet" and config["model.latent_dim"] == 64
    assert config["loss"]["name"] == "l2"  # sections the sweep did not touch stay nested


def run_sweep(path: Path, tmp_path: Path, group: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path / "wandb")}
    cmd = [sys.executable, "-m", "ae_lab.sweep", str(path), "--jobs", "2", "--group", group,
           "--out-dir", str(tmp_path / "out")]  # fmt: skip
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_smoke_grid_runs_offline_under_one_group(tmp_path):
    proc = run_sweep(REPO / "sweeps/smoke.yaml", tmp_path, "smoke-test")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    runs = sorted((tmp_path / "wandb/wandb").glob("offline-run-*"))
    assert len(runs) == 8
    seen = set()
    for run_dir in runs:
        summary, run = inspect_run(run_dir)
        assert summary["state"] == "finished" and summary["exit_code"] == 0
        assert run["run_group"] == "smoke-test" == summary["config"]["logger"]["group"]
        seen.add((summary["config"]["model"]["name"], summary["config"]["loss"]["name"]))
    assert seen == set(itertools.product(MODELS, LOSSES))
    results = [
        json.loads(p.read_text()) for p in (tmp_path / "out/smoke-test").glob("*/result.json")
    ]
    assert len(results) == 8 and all(0.0 <= r["test/image_auroc"] <= 1.0 for r in results)
    assert proc.stdout.count(" ok ") >= 8 and "test/image_auroc" in proc.stdout


@pytest.mark.slow
def test_a_failing_point_is_reported_and_the_others_finish(tmp_path):
    raw = yaml.safe_load((REPO / "sweeps/smoke.yaml").read_text())
    raw["parameters"] |= {"model": {"value": "ae"}, "loss": {"value": "l2"}}
    raw["parameters"]["optimizer.lr"] = {"values": [1.0e-3, -1.0]}  # valid config, AdamW refuses it
    path = tmp_path / "failing.yaml"
    path.write_text(yaml.safe_dump(raw))
    proc = run_sweep(path, tmp_path, "fail-test")
    assert proc.returncode == 1, proc.stdout[-4000:] + proc.stderr[-4000:]
    rows = {
        line.split()[1]: line for line in proc.stdout.splitlines() if line[:4] in ("1/2 ", "2/2 ")
    }
    assert "ok" in rows["00-ae-l2-z16"].split() and "failed (1)" in rows["01-ae-l2-z16"]
    assert (tmp_path / "out/fail-test/00-ae-l2-z16/result.json").is_file()
    assert "Invalid learning rate" in (tmp_path / "out/fail-test/01-ae-l2-z16.log").read_text()
