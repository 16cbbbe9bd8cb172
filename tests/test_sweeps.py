"""ae_lab.sweep and grids of runs: sweep files become one Hydra multirun (`python -m
ae_lab.sweep`), refused when they cannot run as a grid; what a W&B agent passes reaches Hydra
meaning the same; a plain command line reaches Hydra as typed; the runs of a grid (joblib or
submitit launcher) each get their own folder and share one W&B group."""

import itertools
import json
import os
import runpy
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from wandb.sdk.launch.sweeps.utils import create_sweep_command, create_sweep_command_args

from ae_lab.errors import AeLabError
from ae_lab.sweep import hydra_argv, hydra_value, load_sweep, main, multirun_argv, summary
from tests.compose import compose_config, tiny_overrides

REPO = Path(__file__).resolve().parents[1]
MODELS, LOSSES = ["ae", "unet"], ["l1", "l2", "ssim", "ssim_l1"]
PARSER = OverridesParser.create()
COMMAND = ["${env}", "${interpreter}", "${program}", "${args_no_hyphens}"]
AGENT_ENV = {"WANDB_SWEEP_ID": "sw1", "WANDB_RUN_ID": "agentrun1"}


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


GRID_ONLY = r"sweep server"  # random and bayes need W&B's sweep server and `wandb agent`


@pytest.mark.parametrize(
    ("parameters", "top", "match"),
    [
        ({"model": {"values": ["ae"]}}, {"method": "random"}, rf"method: random.*{GRID_ONLY}"),
        ({"model": {"values": ["ae"]}}, {"method": "bayes"}, rf"method: bayes.*{GRID_ONLY}"),
        ({"optimizer.lr": {"min": 1e-4, "max": 1e-2}}, {}, r"`optimizer\.lr` needs"),
        ({"model": ["ae", "unet"]}, {}, r"parameter `model` needs `value: x`"),
        # an empty nested block would vanish from the grid: one full-size default run
        ({"model": {"parameters": {}}}, {}, r"parameter `model` needs .*non-empty nested"),
        # a repeated value would run the same point twice
        ({"loss": {"values": ["l1", "l2", "l1"]}}, {}, r"`loss\.values` .*without repeats"),
        ({"optimizer.lr": {"values": [1e-3, 0.001]}}, {}, r"without repeats"),
        ({}, {}, r"`parameters` must map Hydra paths"),
    ],
)
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
    """PyYAML reads `1e-3` as a string (a run-time error for optimizer.lr); W&B's agent passes
    `optimizer.lr=1e-3`, which Hydra reads as a float. Both routes read a float."""
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
    """`metric: {name: val/loss}` without a goal: W&B's default goal, minimize."""
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
    env = os.environ | AGENT_ENV | {"WANDB_SWEEP_PARAM_PATH": str(params)}
    env |= {"WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path)}
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
    grid = ["--jobs", "2", "--group", "smoke-test", "--out-dir", str(tmp_path / "out")]
    cmd = [sys.executable, "-m", "ae_lab.sweep", str(path), *grid]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    out = proc.stdout
    assert proc.returncode == 1, out[-4000:] + proc.stderr[-4000:]
    folders = sorted((tmp_path / "out/smoke-test").glob("*/result.json"))
    results = {p.parent.name: json.loads(p.read_text()) for p in folders}
    assert sorted(results) == ["0-ae-l2-z16", "1-ae-l2-z16", "2-unet-l2-z16", "3-unet-l2-z16"]
    assert [r["status"] for r in results.values()] == ["ok", "failed"] * 2
    assert "data.batch_size=0" in results["1-ae-l2-z16"]["error"]  # the key and its value
    assert all(0.0 <= r["test/image_auroc"] <= 1.0 for r in results.values() if r["status"] == "ok")
    cores = len(os.sched_getaffinity(0))  # joblib's two workers split the cores between them
    assert {r["torch_threads"] for r in results.values()} == {max(1, cores // 2)}
    assert "2 of 4 runs failed" in out and "wandb sync" in out and "test/image_auroc" in out
    for result in results.values():
        if result["status"] == "ok":
            summary_, run = inspect_run(Path(result["wandb_dir"]))
            assert summary_["state"] == "finished"
            assert run["run_group"] == "smoke-test" == summary_["config"]["logger"]["group"]


# ---- what a W&B agent passes to train.py ---------------------------------------------------
def agent_command(values: dict[str, Any]) -> list[str]:
    """The command `wandb agent` runs for one point: its sweep-command builder (W&B's code) and
    the macro expansion of `wandb_agent.Agent._command_run` (inline there, so reproduced)."""
    sweep_vars = create_sweep_command_args({"args": {k: {"value": v} for k, v in values.items()}})
    sweep_vars |= {"env": ["/usr/bin/env"], "interpreter": ["python"], "program": ["train.py"]}
    command = []
    for chunk in map(str, create_sweep_command(COMMAND)):
        is_macro = chunk.startswith("${") and chunk.endswith("}")
        command += (sweep_vars.get(chunk[2:-1]) or []) if is_macro else [chunk]
    return command


def agent_overrides(values: dict[str, Any]) -> list[str]:
    """What train.py hands Hydra under the agent (the `_wandb` arguments are the agent's own)."""
    argv = hydra_argv(["train.py", "_wandb=x", *agent_command(values)[3:], "--_wandb"], AGENT_ENV)
    assert argv[0] == "train.py"
    return argv[1:]


def parse(overrides: list[str]) -> dict[str, Any]:
    """Hydra's parser on the overrides: `{key: parsed value}`; raises on anything invalid."""
    parsed = PARSER.parse_overrides(overrides)
    assert not any(o.is_sweep_override() for o in parsed), overrides
    return {o.key_or_group: o.value() for o in parsed}


@pytest.mark.parametrize("path", sorted((REPO / "sweeps").glob("*.yaml")), ids=lambda p: p.name)
def test_every_sweep_point_means_the_same_by_both_routes_and_composes(path: Path):
    """The agent's command and the offline runner's values (`hydra_value`) parse to each point's
    values; Hydra composes every value of every parameter (points i: the i-th value of each, cut
    short: composing is slow), each point with its own run name."""
    sweep = load_sweep(path)
    assert sweep["command"] == COMMAND and sweep["program"] == "train.py"
    params = sweep["parameters"]
    for combo in itertools.product(*params.values()):
        point = dict(zip(params, combo, strict=True))
        assert parse([f"{k}={hydra_value(v)}" for k, v in point.items()]) == point
        assert parse(agent_overrides(point)) == point
    n = max(map(len, params.values()))
    diagonal = [{k: v[i % len(v)] for k, v in params.items()} for i in range(n)]
    names = {compose_config(agent_overrides(point)).run_name for point in diagonal}
    assert len(names) == n, "runs must be told apart by name"


def test_python_spelled_values_from_the_agent_become_hydra_values():
    values = {
        "model": "unet",
        "data.categories": ["cable", "screw"],
        "logger.job_type": "train and eval",
        "trainer.deterministic": True,
        "scheduler": None,
        "optimizer.lr": 1e-05,
        "model.net": {"base_channels": 8, "depth": 3},  # W&B's nested `parameters:` syntax
    }
    command = agent_command(values)
    assert "data.categories=['cable', 'screw']" in command  # what the agent really passes
    assert "model.net={'base_channels': 8, 'depth': 3}" in command
    overrides = agent_overrides(values)
    flat = {k: v for k, v in values.items() if k != "model.net"}
    assert parse(overrides) == flat | {"model.net.base_channels": 8, "model.net.depth": 3}
    cfg = compose_config(overrides)
    assert list(cfg.data.categories) == ["cable", "screw"] and cfg.scheduler is None
    assert (cfg.model.net.base_channels, cfg.model.net.depth) == (8, 3)
    # `${args}` passes `--key=value`; Hydra's own flags pass as they are
    argv = ["train.py", "--model=vae", "-m", "--config-name=config", "--cfg", "job"]
    assert hydra_argv(argv, AGENT_ENV) == ["train.py", "model=vae", *argv[2:]]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a,b", "a,b"),  # a Hydra sweep unless quoted
        ("1,2", "1,2"),  # a tuple to Python
        ("x: y", "x: y"),
        ("'quoted already'", "quoted already"),
        ("[cable,screw]", ["cable", "screw"]),  # Hydra's own list syntax is kept
        ("${oc.env:HOME,/tmp}/data", "${oc.env:HOME,/tmp}/data"),
        ("1e-3", 1e-3),
        ("", ""),
    ],
)
def test_agent_strings_keep_their_meaning(text: str, expected: Any):
    (override,) = hydra_argv(["train.py", f"run_name={text}"], AGENT_ENV)[1:]
    assert parse([override]) == {"run_name": expected}


ROUND_TRIPS = ["ae", "one string", " padded ", "a,b", "1", "true", "null", "it's", "x=y"]
ROUND_TRIPS += ["back\\slash\\", "${model.name}", ["cable", "screw"], [1, None, True, "a b"]]
ROUND_TRIPS += [{"a": {"b": [1.5]}}, None, True, False, 0, -3, 2.5e-4, float("inf")]


@pytest.mark.parametrize("value", ROUND_TRIPS)
def test_hydra_value_round_trips(value: Any):
    assert parse([f"key={hydra_value(value)}"]) == {"key": value}


@pytest.mark.parametrize(
    "argv",
    [
        ["train.py", "-m", "model=ae,unet", "loss=l1,l2,ssim,ssim_l1"],
        ["train.py", "-m", "model.latent_dim=range(32,257,32)", "seed=choice(1,2)"],
        ["train.py", "--multirun", "loss=glob(ssim*)", "hydra/launcher=joblib"],
    ],
)
def test_plain_command_lines_reach_hydra_untouched(argv: list[str]):
    assert hydra_argv(argv, {"WANDB_MODE": "offline"}) == argv
    assert hydra_argv(argv, AGENT_ENV) != argv  # under the agent, the sweeps would be quoted


def test_train_py_translates_under_the_agent_and_hydra_reports_typos(monkeypatch, capsys):
    """The real entrypoint, in this process (`--cfg job` prints the config, no training), with the
    argv W&B's command builder makes and the environment the agent sets; then a typo on a plain
    command line: Hydra's own message and exit status, no traceback."""
    values = {"data.categories": ["cable", "screw"], "logger.job_type": "my job", "scheduler": None}
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    monkeypatch.chdir(REPO)
    # @hydra.main leaves its config in this process: later tests must not see a Hydra run.
    monkeypatch.setattr(HydraConfig.instance(), "cfg", None)

    def train_py(*args: str) -> None:
        monkeypatch.setattr(sys, "argv", ["train.py", *args, "--cfg", "job"])
        runpy.run_path(str(REPO / "train.py"), run_name="__main__")

    for key, value in AGENT_ENV.items():
        monkeypatch.setenv(key, value)
    train_py(*agent_command(values)[3:], "--_wandb=resumed")
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["data"]["categories"] == ["cable", "screw"] and cfg["scheduler"] is None
    assert cfg["logger"]["job_type"] == "my job"
    monkeypatch.delenv("WANDB_SWEEP_ID")
    with pytest.raises(SystemExit) as exit_status:
        train_py("trainer.max_epoch=1")
    err = capsys.readouterr().err
    assert exit_status.value.code != 0 and "Traceback" not in err
    assert "Could not override 'trainer.max_epoch'" in err
    assert "Key 'max_epoch' is not in struct" in err


# ---- Hydra multirun launchers --------------------------------------------------------------
def tiny_multirun(tiny_mvtec: Path, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    skip = ("output_dir=", "logger=", "data.cache_dir=")
    overrides = [
        o for o in tiny_overrides(tiny_mvtec, tmp_path, ["widget"]) if not o.startswith(skip)
    ]
    argv = [sys.executable, "train.py", "-m", "model=ae,unet", *overrides, *extra]
    argv += [f"hydra.sweep.dir={tmp_path / 'sweep'}", "media.n_images=4", "media.tsne_test=false"]
    argv += ["result_file=${hydra:runtime.output_dir}/result.json"]
    env = {**os.environ, "WANDB_DIR": str(tmp_path), "WANDB_MODE": "offline"}
    return subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_submitit_launcher_runs_two_tiny_jobs_in_one_w_and_b_group(tiny_mvtec, tmp_path):
    """The launcher that sends the grid to SLURM (`submitit_slurm`), run locally: one submitit job
    (process, log files) per run, each with its own folder; the runs share one W&B group."""
    launcher = ["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10"]
    proc = tiny_multirun(tiny_mvtec, tmp_path, *launcher, "torch.num_threads=1")
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
