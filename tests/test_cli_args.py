"""What a W&B agent passes to train.py becomes valid Hydra overrides (and means the same thing)."""

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from wandb.sdk.launch.sweeps.utils import create_sweep_command, create_sweep_command_args

from ae_lab.overrides import agent_argv_to_hydra, hydra_value
from ae_lab.sweep.spec import load_sweep
from tests.compose import compose_config

REPO = Path(__file__).resolve().parents[1]
SWEEP_FILES = sorted((REPO / "sweeps").glob("*.yaml"))
PARSER = OverridesParser.create()


def agent_command(sweep: dict[str, Any], values: dict[str, Any]) -> list[str]:
    """The command `wandb agent` runs for one point: its sweep-command builder (W&B's code) and
    the macro expansion of `wandb_agent.Agent._command_run` (inline there, so reproduced)."""
    sweep_vars = create_sweep_command_args({"args": {k: {"value": v} for k, v in values.items()}})
    sweep_vars |= {
        "env": ["/usr/bin/env"],
        "interpreter": ["python"],
        "program": [sweep["program"]],
    }
    command = []
    for chunk in create_sweep_command(list(sweep["command"])):
        chunk = str(chunk)
        if chunk.startswith("${") and chunk.endswith("}"):
            command += sweep_vars.get(chunk[2:-1]) or []
        else:
            command.append(chunk)
    return command


def parse(overrides: list[str]) -> dict[str, Any]:
    """Hydra's parser on the overrides: `{key: parsed value}`; raises on anything invalid."""
    parsed = PARSER.parse_overrides(overrides)
    assert not any(o.is_sweep_override() for o in parsed), overrides
    return {o.key_or_group: o.value() for o in parsed}


@pytest.mark.parametrize("path", SWEEP_FILES, ids=lambda p: p.name)
def test_agent_command_of_every_sweep_point_is_valid_for_hydra(path: Path):
    raw = yaml.safe_load(path.read_text())
    assert raw["command"] == ["${env}", "${interpreter}", "${program}", "${args_no_hyphens}"]
    spec = load_sweep(path)
    for point in spec.points():
        command = agent_command(raw, point)
        assert command[:3] == ["/usr/bin/env", "python", "train.py"]
        argv = agent_argv_to_hydra([*command[2:], "--_wandb=resumed"])
        assert parse(argv[1:]) == point
    cfg = compose_config(argv[1:])  # the last point, as train.py would compose it
    assert cfg.model.latent_dim == point.get("model.latent_dim", cfg.model.latent_dim)


def test_python_spelled_values_from_the_agent_become_hydra_values():
    values = {
        "model": "unet",
        "data.categories": ["cable", "screw"],
        "logger.job_type": "train and eval",
        "trainer.deterministic": True,
        "trainer.enable_progress_bar": False,
        "scheduler": None,
        "optimizer.lr": 1e-05,
        "model.net": {"base_channels": 8, "depth": 3},  # W&B's nested `parameters:` syntax
    }
    sweep = {
        "program": "train.py",
        "command": ["${env}", "${interpreter}", "${program}", "${args_no_hyphens}"],
    }
    command = agent_command(sweep, values)
    assert "data.categories=['cable', 'screw']" in command  # what the agent really passes
    assert "logger.job_type=train and eval" in command
    assert "model.net={'base_channels': 8, 'depth': 3}" in command
    argv = agent_argv_to_hydra(["train.py", "_wandb=x", *command[3:], "--_wandb"])
    assert argv[0] == "train.py"
    assert parse(argv[1:]) == {
        "model": "unet",
        "data.categories": ["cable", "screw"],
        "logger.job_type": "train and eval",
        "trainer.deterministic": True,
        "trainer.enable_progress_bar": False,
        "scheduler": None,
        "optimizer.lr": 1e-05,
        "model.net.base_channels": 8,
        "model.net.depth": 3,
    }
    cfg = compose_config(argv[1:])
    assert list(cfg.data.categories) == ["cable", "screw"]
    assert cfg.logger.job_type == "train and eval"
    assert cfg.trainer.deterministic is True and cfg.scheduler is None
    assert (cfg.model.net.base_channels, cfg.model.net.depth) == (8, 3)


def test_double_dash_args_and_hydra_flags():
    argv = ["train.py", "--model=vae", "--loss=ssim", "-m", "--config-name=config", "--cfg", "job"]
    assert agent_argv_to_hydra(argv) == [
        "train.py", "model=vae", "loss=ssim", "-m", "--config-name=config", "--cfg", "job",
    ]  # fmt: skip


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
    (override,) = agent_argv_to_hydra(["train.py", f"run_name={text}"])[1:]
    assert parse([override]) == {"run_name": expected}


@pytest.mark.parametrize(
    "value",
    ["ae", "one string", " padded ", "a,b", "1", "true", "null", "it's", "back\\slash\\", "x=y",
     "${model.name}", ["cable", "screw"], [1, None, True, "a b"], {"a": {"b": [1.5]}},
     None, True, False, 0, -3, 2.5e-4, float("inf")],
)  # fmt: skip
def test_hydra_value_round_trips(value: Any):
    assert parse([f"key={hydra_value(value)}"]) == {"key": value}


def test_train_py_translates_the_agents_command_under_the_agent(tmp_path: Path):
    """The real entrypoint with the argv W&B's command builder makes and the environment the agent
    sets; `--cfg job` prints the config, no training. Without that environment (a plain command
    line) the same Python-spelled values are not translated: Hydra reads them as typed."""
    values = {"data.categories": ["cable", "screw"], "logger.job_type": "my job",
              "scheduler": None, "trainer.deterministic": True}  # fmt: skip
    sweep = {"program": "train.py", "command": ["${env}", "${interpreter}", "${program}", "${args_no_hyphens}"]}  # fmt: skip
    command = agent_command(sweep, values)
    params = tmp_path / "config-agentrun1.yaml"
    params.write_text(yaml.safe_dump({k: {"value": v} for k, v in values.items()}))
    agent_env = {"WANDB_SWEEP_ID": "sw1", "WANDB_RUN_ID": "agentrun1", "WANDB_SWEEP_PARAM_PATH": str(params)}  # fmt: skip
    argv = [sys.executable, *command[3:], "--_wandb=resumed", "--cfg", "job"]
    env = {k: v for k, v in os.environ.items() if k not in agent_env}
    proc = subprocess.run(
        [sys.executable, "train.py", *argv[1:]], cwd=REPO, env=env | agent_env,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    cfg = yaml.safe_load(proc.stdout)
    assert cfg["data"]["categories"] == ["cable", "screw"]
    assert cfg["logger"]["job_type"] == "my job"
    assert cfg["scheduler"] is None and cfg["trainer"]["deterministic"] is True
    plain = subprocess.run(
        [sys.executable, "train.py", *argv[1:]], cwd=REPO, env=env,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert plain.returncode == 2  # Hydra refuses the untranslated arguments
