"""Sweep files compose for every grid point; the runner checks them and runs them as a Hydra multirun."""

import itertools
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from ae_lab.errors import AeLabError
from ae_lab.sweep import expand, load_sweep
from ae_lab.sweep.__main__ import main as sweep_main
from ae_lab.sweep.multirun import RunOutcome, summary_table

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
            r"grid point 0 .*`trainer\.max_epoch` is not a setting.*Did you mean `trainer\.max_epochs=3`",
        ),
        (
            {"model": {"values": ["ae", "transformer"]}},
            {},
            r"\['transformer'\].*Valid choices: ae, unet, vae",
        ),
        (
            {"loss": {"value": "ssim"}, "loss.fn.alpha": {"value": 0.5}},
            {},
            r"\(loss=ssim\).*`loss\.fn\.alpha` is not a setting.*Settings of `loss\.fn`",
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
        # an empty nested block used to vanish from the grid: one full-size default run
        ({"model": {"parameters": {}}}, {}, r"sweep\.yaml: `model\.parameters` is empty"),
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


def test_dry_run_prints_one_hydra_multirun_command(tmp_path):
    out_dir = tmp_path / "out"
    cmd = [sys.executable, "-m", "ae_lab.sweep", "sweeps/grid.yaml", "--dry-run", "--jobs", "2",
           "--group", "g1", "--out-dir", str(out_dir), "trainer.max_epochs=2"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    (line,) = proc.stdout.strip().splitlines()
    words = shlex.split(line)
    assert words[:3] == [sys.executable, "train.py", "-m"]
    parsed = OverridesParser.create().parse_overrides(words[3:])
    sweeps = {
        o.key_or_group: list(o.sweep_string_iterator()) for o in parsed if o.is_sweep_override()
    }
    assert sweeps == {"model": MODELS, "loss": LOSSES}
    values = {o.key_or_group: o.value() for o in parsed if not o.is_sweep_override()}
    assert (
        values["data"] == "mvtec" and values["trainer.max_epochs"] == 2
    )  # the extra override wins
    assert values["logger.group"] == "g1" and Path(values["hydra.sweep.dir"]) == out_dir / "g1"
    assert values["hydra/launcher"] == "joblib" and values["hydra.launcher.n_jobs"] == 2
    assert values["result_file"] == "${hydra:runtime.output_dir}/result.json"
    assert "0-ae-l1-z128" in proc.stderr and "7-unet-ssim_l1-z128" in proc.stderr
    assert not out_dir.exists()


def test_grid_on_missing_mvtec_fails_once_before_any_run(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MVTEC_ROOT", str(tmp_path / "no_mvtec"))
    code = sweep_main(["sweeps/grid.yaml", "--group", "g", "--out-dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert "No run of the grid can start" in err and "does not exist" in err
    assert "python -m ae_lab.data.download" in err and "data=synthetic" in err
    assert not (tmp_path / "out/g").exists()  # no multirun started


def test_summary_table_reports_status_time_and_best_metric():
    def outcome(i: int, status: str, auroc: float | None) -> RunOutcome:
        result = {} if auroc is None else {"test/image_auroc": auroc}
        return RunOutcome(i, 3, f"{i}-ae-l{i}", status, 65.0 + i, result)

    table = summary_table(
        [outcome(0, "ok", 0.7), outcome(1, "failed", None), outcome(2, "ok", 0.9)],
        "test/image_auroc",
    )
    rows = table.splitlines()
    assert rows[0].split() == ["#", "run", "status", "time", "test/image_auroc"]
    assert rows[2].split() == ["1/3", "0-ae-l0", "ok", "1m05s", "0.7000"]
    assert rows[3].split() == ["2/3", "1-ae-l1", "failed", "1m06s", "-"]
    assert rows[4].split() == ["3/3", "2-ae-l2", "ok", "1m07s", "0.9000", "*"]


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


def run_sweep(path: Path, tmp_path: Path, group: str, **popen: Any) -> subprocess.Popen:
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path / "wandb")}
    cmd = [sys.executable, "-m", "ae_lab.sweep", str(path), "--jobs", "2", "--group", group,
           "--out-dir", str(tmp_path / "out")]  # fmt: skip
    return subprocess.Popen(cmd, cwd=REPO, env=env, text=True, **popen)


def finish(proc: subprocess.Popen, timeout: float = 600) -> str:
    out, _ = proc.communicate(timeout=timeout)
    return out


def smoke_file(tmp_path: Path, **parameters: Any) -> Path:
    raw = yaml.safe_load((REPO / "sweeps/smoke.yaml").read_text())
    raw["parameters"] |= parameters
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.slow
def test_smoke_grid_runs_offline_under_one_group(tmp_path):
    proc = run_sweep(REPO / "sweeps/smoke.yaml", tmp_path, "smoke-test", stdout=subprocess.PIPE)
    out = finish(proc)
    assert proc.returncode == 0, out[-6000:]
    runs = sorted((tmp_path / "wandb/wandb").glob("offline-run-*"))
    assert len(runs) == 8
    seen = set()
    for run_dir in runs:
        summary, run = inspect_run(run_dir)
        assert summary["state"] == "finished" and summary["exit_code"] == 0
        assert run["run_group"] == "smoke-test" == summary["config"]["logger"]["group"]
        seen.add((summary["config"]["model"]["name"], summary["config"]["loss"]["name"]))
    assert seen == set(itertools.product(MODELS, LOSSES))
    folders = sorted((tmp_path / "out/smoke-test").glob("*/result.json"))
    results = [json.loads(p.read_text()) for p in folders]
    assert len(results) == 8 and all(0.0 <= r["test/image_auroc"] <= 1.0 for r in results)
    # joblib's two workers split the cores between them
    cores = len(os.sched_getaffinity(0))
    assert {r["torch_threads"] for r in results} == {max(1, cores // 2)}
    assert out.count(" ok ") >= 8 and "test/image_auroc" in out and "wandb sync" in out


@pytest.mark.slow
def test_failing_points_are_reported_and_the_others_finish(tmp_path):
    """batch_size 0 fails in the datamodule's constructor (an instantiation error that used to
    abort the whole sweep while preparing data), lr -1 in AdamW: 1 of 4 runs is ok."""
    path = smoke_file(
        tmp_path,
        model={"value": "ae"},
        loss={"value": "l2"},
        **{"data.batch_size": {"values": [8, 0]}, "optimizer.lr": {"values": [1.0e-3, -1.0]}},
    )
    proc = run_sweep(path, tmp_path, "fail-test", stdout=subprocess.PIPE)
    out = finish(proc)
    assert proc.returncode == 1, out[-6000:]
    rows = {line.split()[0]: line for line in out.splitlines() if line[:4] in ("1/4 ", "2/4 ", "3/4 ", "4/4 ")}  # fmt: skip
    assert rows["1/4"].split()[1:3] == ["0-ae-l2-z16", "ok"]
    assert all(rows[k].split()[2] == "failed" for k in ("2/4", "3/4", "4/4")), out[-3000:]
    assert "grid point 2 will fail" in out and "`data.batch_size` must be >= 1" in out
    assert "Invalid learning rate" in out  # reported as the run ends, with its reason
    assert "3 of 4 runs failed" in out


@pytest.mark.slow
def test_sigterm_stops_every_run_and_prints_the_summary(tmp_path):
    import psutil

    long_runs = {"trainer.max_epochs": {"value": 1000}}  # ae and unet, until the signal
    path = smoke_file(tmp_path, loss={"value": "l1"}, **long_runs)
    proc = run_sweep(path, tmp_path, "term-test", stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    sweep_dir = tmp_path / "out/term-test"
    deadline = time.monotonic() + 300
    while len(list(sweep_dir.glob("*/checkpoints"))) < 2:  # both runs are training
        assert proc.poll() is None and time.monotonic() < deadline, finish(proc)[-4000:]
        time.sleep(0.5)
    children = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(signal.SIGTERM)
    out = finish(proc, timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, out[-4000:]
    assert "SIGTERM: stopping every run" in out and "interrupted" in out
    assert "test/image_auroc" in out  # the summary table
    _, alive = psutil.wait_procs(children, timeout=10)
    assert not [p for p in alive if "python" in p.name().lower()]
