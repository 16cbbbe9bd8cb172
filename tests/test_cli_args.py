"""train.py's command line: what a W&B agent passes becomes Hydra overrides that mean the same
thing, a plain command line reaches Hydra as typed, and Hydra reports a mistyped key itself."""

import itertools
import runpy
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from wandb.sdk.launch.sweeps.utils import create_sweep_command, create_sweep_command_args

from ae_lab.sweep import hydra_argv, hydra_value, load_sweep
from tests.compose import compose_config

REPO = Path(__file__).resolve().parents[1]
PARSER = OverridesParser.create()
COMMAND = ["${env}", "${interpreter}", "${program}", "${args_no_hyphens}"]
AGENT_ENV = {"WANDB_SWEEP_ID": "sw1", "WANDB_RUN_ID": "agentrun1"}


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


@pytest.mark.parametrize(
    "value",
    ["ae", "one string", " padded ", "a,b", "1", "true", "null", "it's", "back\\slash\\", "x=y",
     "${model.name}", ["cable", "screw"], [1, None, True, "a b"], {"a": {"b": [1.5]}},
     None, True, False, 0, -3, 2.5e-4, float("inf")],
)  # fmt: skip
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
