"""Sweep files become one Hydra multirun (`python -m ae_lab.sweep`): refused when they cannot
run as a grid, the Hydra command, a summary of the runs, and a real grid, offline."""

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

from ae_lab.errors import AeLabError
from ae_lab.sweep import load_sweep, main, multirun_argv, summary

REPO = Path(__file__).resolve().parents[1]
MODELS, LOSSES = ["ae", "unet"], ["l1", "l2", "ssim", "ssim_l1"]


def write_sweep(tmp_path: Path, parameters: Any, text: str = "", **top: Any) -> Path:
    raw = {"name": "t", "program": "train.py", "method": "grid", "parameters": parameters, **top}
    path = tmp_path / "sweep.yaml"
    path.write_text(text or yaml.safe_dump(raw))
    return path


def test_grid_files_are_architecture_x_loss():
    grid, grid_all, smoke = (
        load_sweep(REPO / f"sweeps/{n}.yaml") for n in ("grid", "grid_all", "smoke")
    )
    assert (grid["parameters"]["model"], grid["parameters"]["loss"]) == (MODELS, LOSSES)
    assert smoke["parameters"]["model"] == MODELS and smoke["parameters"]["loss"] == LOSSES
    assert grid_all["parameters"] == grid["parameters"] | {"model": [*MODELS, "vae"]}
    for sweep in (grid, grid_all, smoke):
        assert sweep["metric"] == {"name": "test/image_auroc", "goal": "maximize"}
        assert sweep["project"] == "tarea05"
    assert load_sweep(REPO / "sweeps/latent.yaml")["parameters"]["model.latent_dim"] == [
        32,
        64,
        128,
        256,
    ]


@pytest.mark.parametrize(
    ("parameters", "top", "match"),
    [
        ({"model": {"values": ["ae"]}}, {"method": "random"}, r"method: random.*sweep server.*wandb agent"),
        ({"model": {"values": ["ae"]}}, {"method": "bayes"}, r"method: bayes.*sweep server"),
        ({"optimizer.lr": {"min": 1e-4, "max": 1e-2}}, {}, r"`optimizer\.lr` needs .*random\|bayes"),
        ({"model": ["ae", "unet"]}, {}, r"parameter `model` needs `value: x`"),
        # an empty nested block used to vanish from the grid: one full-size default run
        ({"model": {"parameters": {}}}, {}, r"parameter `model` needs .*non-empty nested"),
        # issue 20: a repeated value ran the same point twice, silently
        ({"loss": {"values": ["l1", "l2", "l1"]}}, {}, r"`loss\.values` must be a list without repeats"),
        ({"optimizer.lr": {"values": [1e-3, 0.001]}}, {}, r"without repeats"),
        ({}, {}, r"`parameters` must map Hydra paths"),
    ],
)  # fmt: skip
def test_sweeps_that_cannot_run_as_a_grid_are_refused(tmp_path, parameters, top, match):
    with pytest.raises(AeLabError, match=match):
        load_sweep(write_sweep(tmp_path, parameters, **top))


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("method: grid\nparameters:\n  model: {values: [ae, unet]\n", r"not valid YAML .*line 3"),
        ("- method\n- grid\n", r"must be a YAML mapping"),
    ],
)
def test_sweep_files_that_are_not_yaml_mappings_are_refused(tmp_path, text, match):
    with pytest.raises(AeLabError, match=match):
        load_sweep(write_sweep(tmp_path, None, text))


def test_yaml_floats_read_as_the_agent_passes_them(tmp_path):
    """Issue 20: PyYAML reads `1e-3` as a string (a run-time error for optimizer.lr); W&B's agent
    passes `optimizer.lr=1e-3`, which Hydra reads as a float. Both routes now read a float."""
    text = "method: grid\nparameters:\n  optimizer.lr:\n    values: [1e-3, 0.003]\n"
    assert load_sweep(write_sweep(tmp_path, None, text))["parameters"] == {
        "optimizer.lr": [0.001, 0.003]
    }


def test_dry_run_prints_one_hydra_multirun_command(tmp_path, capsys):
    out_dir = tmp_path / "out"
    argv = [
        "sweeps/grid.yaml",
        "--dry-run",
        "--jobs",
        "2",
        "--group",
        "g 1",
        "--out-dir",
        str(out_dir),
    ]
    assert main([*argv, "trainer.max_epochs=2"]) == 0
    (line,) = capsys.readouterr().out.strip().splitlines()
    words = shlex.split(line)
    assert words[:3] == [sys.executable, "train.py", "-m"]
    parsed = OverridesParser.create().parse_overrides(words[3:])
    sweeps = {
        o.key_or_group: list(o.sweep_string_iterator()) for o in parsed if o.is_sweep_override()
    }
    assert sweeps == {"model": MODELS, "loss": LOSSES}
    values = {o.key_or_group: o.value() for o in parsed if not o.is_sweep_override()}
    assert values["data"] == "mvtec" and values["trainer.max_epochs"] == 2  # the extra one wins
    assert values["logger.group"] == "g 1" and Path(values["hydra.sweep.dir"]) == out_dir / "g_1"
    assert values["hydra/launcher"] == "joblib" and values["hydra.launcher.n_jobs"] == 2
    assert values["result_file"] == "${hydra:runtime.output_dir}/result.json"
    assert not out_dir.exists()
    with pytest.raises(SystemExit) as exit_status:
        main([*argv, "model=vae"])  # an extra override of a swept parameter
    assert exit_status.value.code == 2
    assert "clashes with the sweep over model" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "group"),
    [
        (["logger.project=p"], "g"),  # any logger.* override used to drop the group
        (["+logger.tags=[a]", "logger=wandb"], "g"),
        (["logger.group=mine"], "mine"),
        (["logger=none"], None),  # no logger, no group to set
    ],
)
def test_runs_join_the_sweep_group_unless_logger_group_is_given(extra, group):
    sweep = {"parameters": {"model": ["ae", "unet"]}}
    argv = multirun_argv(sweep, extra, Path("out"), "g", 1)
    groups = [a.split("=", 1)[1] for a in argv if a.startswith("logger.group=")]
    assert groups == ([group] if group else [])
    sweep["parameters"]["logger.group"] = ["from-file"]
    assert "logger.group=g" not in multirun_argv(sweep, [], Path("out"), "g", 1)


@pytest.mark.parametrize(("goal", "best"), [(None, "1-b"), ("maximize", "0-a")])
def test_summary_stars_the_best_run_by_the_goal_minimize_by_default(tmp_path, goal, best):
    """Issue 20: `metric: {name: val/loss}` without a goal starred the highest loss; W&B's default
    goal is minimize."""
    for name, result in {"0-a": {"val/loss": 0.3}, "1-b": {"val/loss": 0.1}, "2-c": {}}.items():
        (tmp_path / name).mkdir()
        status = {"status": "ok" if result else "failed"}
        (tmp_path / name / "result.json").write_text(json.dumps(result | status))
    table, failed = summary(
        tmp_path, 4, {"name": "val/loss", "goal": goal} if goal else {"name": "val/loss"}
    )
    rows = {line.split()[0]: line.split()[1:] for line in table.splitlines()[1:]}
    assert rows[best][-1] == "*" and sum(row[-1] == "*" for row in rows.values()) == 1
    assert rows["2-c"] == ["failed", "-"] and len(rows) == 3
    assert failed == 2  # 2-c, and run 3 that wrote no result


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
    assert proc.stdout.split()[-2:] == ["agentrun1", "unet-ssim-z64"]
    (run_dir,) = (tmp_path / "wandb").glob("offline-run-*-agentrun1")
    summary, run = inspect_run(run_dir)
    assert run["sweep_id"] == "sw1" and summary["name"] == "unet-ssim-z64"
    config = summary["config"]
    assert config["model"] == "unet"  # as the sweep set it
    assert config["model.name"] == "unet" and config["model.latent_dim"] == 64
    assert config["loss"]["name"] == "ssim"  # sections the sweep did not touch stay nested


@pytest.mark.slow
def test_grid_runs_offline_in_one_group_and_reports_its_failed_points(tmp_path):
    """sweeps/smoke.yaml cut to ae, unet x batch size 8, 0 (0 fails in the datamodule), two at a
    time: the failed runs are reported, the others finish in one W&B group, exit status 1."""
    raw = yaml.safe_load((REPO / "sweeps/smoke.yaml").read_text())
    raw["parameters"] |= {"loss": {"value": "l2"}, "data.batch_size": {"values": [8, 0]}}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path / "wandb")}
    cmd = [sys.executable, "-m", "ae_lab.sweep", str(path), "--jobs", "2", "--group", "smoke-test",
           "--out-dir", str(tmp_path / "out")]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    out = proc.stdout
    assert proc.returncode == 1, out[-4000:] + proc.stderr[-4000:]
    folders = sorted((tmp_path / "out/smoke-test").glob("*/result.json"))
    results = {p.parent.name: json.loads(p.read_text()) for p in folders}
    assert sorted(results) == ["0-ae-l2-z16", "1-ae-l2-z16", "2-unet-l2-z16", "3-unet-l2-z16"]
    assert [r["status"] for r in results.values()] == ["ok", "failed"] * 2
    assert "`data.batch_size` must be" in results["1-ae-l2-z16"]["error"]
    assert all(0.0 <= r["test/image_auroc"] <= 1.0 for r in results.values() if r["status"] == "ok")
    cores = len(os.sched_getaffinity(0))  # joblib's two workers split the cores between them
    assert {r["torch_threads"] for r in results.values()} == {max(1, cores // 2)}
    assert "2 of 4 runs failed" in out and "wandb sync" in out and "test/image_auroc" in out
    for result in results.values():
        if result["status"] == "ok":
            summary_, run = inspect_run(Path(result["wandb_dir"]))
            assert summary_["state"] == "finished"
            assert run["run_group"] == "smoke-test" == summary_["config"]["logger"]["group"]
