"""A run stopped, killed or handed a hostile file: what is left must be usable, and what the user
is told must work. Each test drives `train.py` in its own process, as a user would."""

import json
import os
import pickle
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ae_lab.checks import load_checkpoint
from ae_lab.errors import AeLabError
from ae_lab.module import AutoencoderModule
from ae_lab.training import AtomicCheckpointIO

REPO = Path(__file__).resolve().parents[2]


def overrides(root: Path, out: Path, epochs: int = 3) -> list[str]:
    return [
        "logger=none",
        "data=mvtec",
        f"data.root={root}",
        "data.categories=[widget,screw]",
        "data.image_size=32",
        "data.batch_size=4",
        f"data.cache_dir={out.parent / 'cache'}",
        "model.latent_dim=8",
        "model.net.base_channels=8",
        "model.net.depth=3",
        f"trainer.max_epochs={epochs}",
        "trainer.enable_model_summary=false",
        f"hydra.run.dir={out}",
        f"result_file={out / 'result.json'}",
    ]


def pause(marker: Path, stage: str, after_epoch: int = 0, hold: Path | None = None) -> str:
    held = f", hold: '{hold}'" if hold else ""
    return (
        "+callbacks.pause={_target_: tests.faults.pause.Pause, "
        f"marker: '{marker}', stage: {stage}, after_epoch: {after_epoch}{held}}}"
    )


def start(args: list[str], sigint: signal.Handlers = signal.SIG_DFL) -> subprocess.Popen:
    """`python train.py *args` with SIGINT as a terminal's foreground job has it (SIG_DFL), or as a
    job a script starts with `&` inherits it (SIG_IGN)."""
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "train.py", *args]
    return subprocess.Popen(
        cmd,
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, sigint),
    )


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"the run ended first: {proc.communicate()}"
        assert time.monotonic() < end, f"{path} never appeared"
        time.sleep(0.05)


def advice(stderr: str) -> list[str]:
    """The command printed under `[ae-lab] interrupted.`, as argv."""
    line = stderr.split("[ae-lab] interrupted.")[1].splitlines()[1].strip()
    argv = shlex.split(line)
    assert argv[:2] == ["python", "train.py"], line
    return argv[2:]


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_while_training_prints_a_resume_command_that_finishes_the_run(
    sig, code, tiny_mvtec, tmp_path
):
    out, marker = tmp_path / "run", tmp_path / "training"
    proc = start([*overrides(tiny_mvtec, out), pause(marker, "fit", after_epoch=1)])
    wait_for(marker, proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert "Resume it from its last checkpoint with:" in err and "Traceback" not in err
    resume = advice(err)
    assert f"ckpt_path={out / 'checkpoints' / 'last.ckpt'}" in resume
    if sig != signal.SIGINT:  # following the advice goes the same way whichever signal it was
        return
    resumed = start([a for a in resume if not a.startswith("+callbacks.pause")])
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert json.loads((out / "result.json").read_text())["status"] == "ok"


@pytest.mark.slow
def test_sigint_ends_a_run_that_inherited_it_ignored(tiny_mvtec, tmp_path):
    """A script's background job (`python train.py ... &`) starts with SIGINT ignored; `kill -INT`
    and the grid, which stops its runs with SIGINT, must still end it as an interrupted run."""
    out, marker = tmp_path / "run", tmp_path / "training"
    proc = start([*overrides(tiny_mvtec, out), pause(marker, "fit")], sigint=signal.SIG_IGN)
    wait_for(marker, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Resume it from its last checkpoint with:" in err or "start the run again" in err


@pytest.mark.slow
def test_ctrl_c_while_testing_advises_evaluating_the_checkpoint_not_resuming(tiny_mvtec, tmp_path):
    out, marker = tmp_path / "run", tmp_path / "testing"
    proc = start([*overrides(tiny_mvtec, out, epochs=1), pause(marker, "test")])
    wait_for(marker, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Training had finished; evaluate its checkpoint with:" in err
    evaluate = [a for a in advice(err) if not a.startswith("+callbacks.pause")]
    assert "train=false" in evaluate and any(a.startswith("ckpt_path=") for a in evaluate)
    done = start(evaluate)
    _, err = done.communicate(timeout=300)
    assert done.returncode == 0, err
    assert "test/image_auroc" in json.loads((out / "result.json").read_text())


@pytest.mark.slow
def test_kill_9_mid_epoch_then_resume_ends_as_the_uninterrupted_run(tiny_mvtec, tmp_path):
    whole = start(overrides(tiny_mvtec, tmp_path / "whole", epochs=4))
    killed_out, marker = tmp_path / "killed", tmp_path / "epoch2"
    killed = start([*overrides(tiny_mvtec, killed_out, epochs=4), pause(marker, "fit", 2)])
    wait_for(marker, killed)
    killed.kill()  # SIGKILL: no handler, no cleanup, in the middle of epoch 2
    killed.communicate()
    assert load_checkpoint(killed_out / "checkpoints" / "last.ckpt")["epoch"] == 1
    resumed = start(
        [
            *overrides(tiny_mvtec, killed_out, epochs=4),
            f"ckpt_path={killed_out / 'checkpoints' / 'last.ckpt'}",
        ]
    )
    assert resumed.wait(timeout=300) == 0 and whole.wait(timeout=300) == 0
    a = json.loads((tmp_path / "whole" / "result.json").read_text())
    b = json.loads((killed_out / "result.json").read_text())
    for key in ("train/loss", "val/loss", "test/image_auroc"):
        assert a[key] == pytest.approx(b[key], rel=1e-5), key


KILL_WHILE_SAVING = """
import os, signal, sys, torch
from ae_lab.training import AtomicCheckpointIO

class Bomb:  # pickled halfway through the file: the process dies mid-write
    def __reduce__(self):
        os.kill(os.getpid(), signal.SIGKILL)

AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.ones(1000)}, "x": Bomb()}, sys.argv[1])
"""


def test_kill_9_while_a_checkpoint_is_written_leaves_the_previous_one_whole(tmp_path):
    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.zeros(3)}, "epoch": 4}, path)
    proc = subprocess.run([sys.executable, "-c", KILL_WHILE_SAVING, str(path)], cwd=REPO)
    assert proc.returncode == -signal.SIGKILL
    assert load_checkpoint(path)["epoch"] == 4  # the complete previous file, untouched
    partial = Path(f"{path}.tmp")
    if partial.exists():  # what the killed write left is refused, not half-read
        with pytest.raises(AeLabError, match="Cannot read the checkpoint"):
            load_checkpoint(partial)


class Payload:
    """Unpickling this runs a shell command: what a hostile `.ckpt` would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


def test_a_checkpoint_that_runs_code_when_loaded_is_refused_and_runs_nothing(tiny_mvtec, tmp_path):
    marker, evil = tmp_path / "pwned", tmp_path / "model.ckpt"
    torch.save({"state_dict": {}, "epoch": 0, "hook": Payload(marker)}, evil, pickle_module=pickle)
    proc = start([*overrides(tiny_mvtec, tmp_path / "run"), "train=false", f"ckpt_path={evil}"])
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, err
    assert "[ae-lab] error:" in err and "weights_only=False" in err and str(evil) in err
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        AutoencoderModule.load_from_checkpoint(evil, weights_only=True)
    assert not marker.exists()


@pytest.mark.slow
def test_a_second_run_in_the_same_folder_is_refused_and_the_first_finishes(tiny_mvtec, tmp_path):
    out, marker, hold = tmp_path / "run", tmp_path / "training", tmp_path / "go on"
    first = start([*overrides(tiny_mvtec, out, epochs=2), pause(marker, "fit", hold=hold)])
    wait_for(marker, first)  # the first run is training, and waits for `hold`
    second = start(overrides(tiny_mvtec, out, epochs=2))
    _, err = second.communicate(timeout=120)
    assert second.returncode == 2 and "Another run is writing to" in err, err
    hold.touch()
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert json.loads((out / "result.json").read_text())["status"] == "ok"
