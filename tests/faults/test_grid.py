"""Faults of a grid (`python -m ae_lab.sweep`, issue 28): a stopped grid stops, whole process
group and all, with the summary of what finished; a second grid of the same group is refused; a
sweep file with a YAML tag is refused without running it."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from subprocess import PIPE

import psutil
import pytest

from ae_lab.sweep import main

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "sweeps/smoke.yaml"
N_SMOKE = 8  # model x loss


# ---- the stop, with a stand-in for the multirun (no training: a second each) -------------------
# A "multirun" that writes its pid and that of a child of its own, then sleeps; with `ignore`,
# both ignore SIGINT, like a run that hangs on its way out.
FAKE_MULTIRUN = """
import os, signal, subprocess, sys, time
ignore, pids = sys.argv[1] == "ignore", sys.argv[2]
def count(signum, frame):
    with open(pids + ".sigint", "a") as f:
        f.write("SIGINT\\n")
    sys.exit(130)
signal.signal(signal.SIGINT, signal.SIG_IGN if ignore else count)
child = subprocess.Popen([sys.executable, "-c", "import signal, time; "
    f"signal.signal(signal.SIGINT, signal.{'SIG_IGN' if ignore else 'SIG_DFL'}); time.sleep(60)"])
with open(pids + ".tmp", "w") as f:
    f.write(f"{os.getpid()} {child.pid}")
os.replace(pids + ".tmp", pids)
time.sleep(60)
"""
# The sweep runner around it, with a short grace; exits as `main` does: 128 + the signal.
RUNNER = """
import sys
from ae_lab.sweep import run_grid
fake, ignore, pids, grace = sys.argv[1:]
code, stopped_by = run_grid([sys.executable, fake, ignore, pids], {}, grace=float(grace))
print("multirun exit", code, flush=True)
sys.exit(128 + stopped_by if stopped_by else code)
"""


def start_runner(tmp_path: Path, ignore: bool, grace: float) -> tuple[subprocess.Popen, Path]:
    """The runner in its own session (a terminal's foreground job), once its fake grid is up."""
    fake, pids = tmp_path / "fake.py", tmp_path / "pids"
    fake.write_text(FAKE_MULTIRUN)
    argv = [sys.executable, "-c", RUNNER, str(fake), "ignore" if ignore else "-", str(pids)]
    runner = subprocess.Popen(
        [*argv, str(grace)], cwd=REPO, start_new_session=True, stdout=PIPE, stderr=PIPE, text=True
    )
    wait_for(lambda: pids.exists(), runner, 30)
    return runner, pids


def wait_for(ready, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, f"exited {proc.returncode} before it was ready"
        assert time.monotonic() < deadline, f"not ready after {timeout} s"
        time.sleep(0.1)


def alive(pids: list[int]) -> list[int]:
    def running(pid: int) -> bool:
        try:
            return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    return [pid for pid in pids if running(pid)]


def test_ctrl_c_reaches_the_grid_once_and_ends_it(tmp_path):
    """Ctrl-C in a terminal signals the whole foreground job: the runner, not its grid, which has
    its own session and gets exactly one SIGINT, forwarded (a second one would cut Lightning's
    graceful stop short)."""
    runner, pids = start_runner(tmp_path, ignore=False, grace=30)
    os.killpg(runner.pid, signal.SIGINT)  # what the terminal does
    out, _ = runner.communicate(timeout=30)
    assert runner.returncode == 130
    assert "multirun exit 130" in out
    assert (tmp_path / "pids.sigint").read_text() == "SIGINT\n"
    assert alive([int(p) for p in pids.read_text().split()]) == []


def test_a_grid_that_ignores_sigint_is_killed_after_the_grace(tmp_path):
    """SIGTERM to the runner: SIGINT to the group, and what is still there after the grace (1 s
    here) gets SIGKILL, the multirun's child included."""
    runner, pids = start_runner(tmp_path, ignore=True, grace=1)
    group = [int(p) for p in pids.read_text().split()]
    start = time.monotonic()
    runner.send_signal(signal.SIGTERM)
    out, err = runner.communicate(timeout=30)
    assert runner.returncode == 143 and f"multirun exit {-signal.SIGKILL}" in out
    assert "[sweep] SIGTERM: stopping the runs in flight" in err
    assert "[sweep] the runs did not stop in 1 s: killed." in err
    assert 1 <= time.monotonic() - start < 15
    assert alive(group) == []


def test_a_second_signal_kills_the_grid_at_once(tmp_path):
    runner, pids = start_runner(tmp_path, ignore=True, grace=600)
    group = [int(p) for p in pids.read_text().split()]
    start = time.monotonic()
    runner.send_signal(signal.SIGINT)
    time.sleep(0.5)
    runner.send_signal(signal.SIGINT)
    runner.communicate(timeout=30)
    assert runner.returncode == 130 and time.monotonic() - start < 15
    assert alive(group) == []


# ---- refusals before anything runs -------------------------------------------------------------
def test_a_sweep_file_with_a_yaml_tag_is_refused_and_nothing_runs(tmp_path, capsys):
    pwned = tmp_path / "pwned"
    path = tmp_path / "evil.yaml"
    path.write_text(
        "method: grid\nparameters:\n  model:\n"
        f'    values: !!python/object/apply:os.system ["touch {pwned}"]\n'
    )
    with pytest.raises(SystemExit) as exit_status:
        main([str(path), "--out-dir", str(tmp_path / "out")])
    assert exit_status.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("[ae-lab] error:") and "\n" not in err  # one paragraph
    assert f"{path} holds a YAML tag" in err and "remove the tag" in err
    assert not pwned.exists() and not (tmp_path / "out").exists()


def test_a_second_grid_of_a_running_group_is_refused(tmp_path, capsys):
    """The first grid claims its folder when it starts (Hydra creates it only seconds later)."""
    (tmp_path / "out/g").mkdir(parents=True)
    (tmp_path / "out/g/0-ae-l1-z16").mkdir()  # the first grid's run, left alone
    with pytest.raises(SystemExit) as exit_status:
        main([str(SMOKE), "--group", "g", "--out-dir", str(tmp_path / "out")])
    assert exit_status.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("[ae-lab] error:") and "\n" not in err
    assert f"{tmp_path / 'out/g'} of group `g` exists already" in err
    assert "another sweep with this --group is running" in err and "another --group" in err
    assert [p.name for p in (tmp_path / "out/g").iterdir()] == ["0-ae-l1-z16"]


# ---- real grids (sweeps/smoke.yaml) ------------------------------------------------------------
def start_grid(tmp_path: Path, data: Path, name: str, *extra: str) -> subprocess.Popen:
    """`python -m ae_lab.sweep sweeps/smoke.yaml --group g` on the `synthetic_root` set (the
    smoke set, made once a session), its output in tmp_path/<name>.* (files, not pipes: a full
    pipe would stall the runs)."""
    env = os.environ | {
        "WANDB_DIR": str(tmp_path / "wandb"),
        "AE_LAB_OUTPUTS": str(tmp_path / "outputs"),
        "OMP_NUM_THREADS": "1",
    }
    cmd = [
        sys.executable,
        "-m",
        "ae_lab.sweep",
        str(SMOKE),
        "--group",
        "g",
        f"data.root={data}",
        *extra,
    ]
    with (tmp_path / f"{name}.out").open("w") as out, (tmp_path / f"{name}.err").open("w") as err:
        return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=err)


def stop_after_the_first_result(grid: subprocess.Popen, sweep_dir: Path, sig: int) -> tuple:
    """Send `sig` to the runner once a run has ended; (the grid's process group, the seconds
    from the signal to the runner's exit)."""
    wait_for(lambda: any(sweep_dir.glob("*/result.json")), grid, 600)
    (multirun,) = psutil.Process(grid.pid).children()
    assert os.getpgid(multirun.pid) == multirun.pid  # a group of its own
    start = time.monotonic()
    grid.send_signal(sig)
    grid.wait(timeout=120)
    return multirun.pid, time.monotonic() - start


def group_alive(pgid: int) -> list[psutil.Process]:
    def member(p: psutil.Process) -> bool:
        try:
            return os.getpgid(p.pid) == pgid and p.status() != psutil.STATUS_ZOMBIE
        except (ProcessLookupError, psutil.NoSuchProcess):
            return False

    return [p for p in psutil.process_iter() if member(p)]


def output(tmp_path: Path, name: str) -> tuple[str, str]:
    return (tmp_path / f"{name}.out").read_text(), (tmp_path / f"{name}.err").read_text()


def results(sweep_dir: Path) -> dict[str, str]:
    return {
        p.parent.name: json.loads(p.read_text())["status"] for p in sweep_dir.glob("*/result.json")
    }


@pytest.mark.slow
def test_sigterm_stops_the_grid_and_a_second_grid_of_its_group_is_refused(tmp_path, synthetic_root):
    """Two grids started at once with one --group: one is refused (exit 2, one paragraph) and
    the other runs. SIGTERM to it once a run has ended: no further run starts, the summary of
    what ended and one line on what did not run, exit 143, none of its processes left."""
    grids = {name: start_grid(tmp_path, synthetic_root, name, "logger=none") for name in "ab"}
    wait_for(lambda: any(g.poll() is not None for g in grids.values()), grids["a"], 120)
    (refused, _), (name, grid) = sorted(grids.items(), key=lambda item: item[1].poll() is None)
    assert grids[refused].returncode == 2
    refusal = output(tmp_path, refused)[1].strip()
    assert refusal.startswith("[ae-lab] error:") and "\n" not in refusal
    assert "of group `g` exists already" in refusal and "another --group" in refusal

    sweep_dir = tmp_path / "outputs/sweeps/g"
    pgid, seconds = stop_after_the_first_result(grid, sweep_dir, signal.SIGTERM)
    out, err = output(tmp_path, name)
    assert grid.returncode == 143, out[-3000:]
    assert "did not stop" not in err, f"the runs were killed, {seconds:.0f} s after the signal"
    assert "test/image_auroc" in out and "[sweep] grid stopped by SIGTERM: " in out
    assert "did not run." in out.splitlines()[-1]
    assert 0 < list(results(sweep_dir).values()).count("ok") < N_SMOKE
    assert len(list(sweep_dir.glob("[0-9]*-*"))) < N_SMOKE  # not every run started
    assert group_alive(pgid) == []


@pytest.mark.slow
def test_sigint_stops_a_grid_of_two_workers_and_its_whole_group(tmp_path, synthetic_root):
    """`--jobs 2` (joblib's loky workers) with W&B offline: Ctrl-C ends the runs in flight as
    interrupted runs, exit 130, and no worker is left."""
    grid = start_grid(tmp_path, synthetic_root, "a", "--jobs", "2")
    sweep_dir = tmp_path / "outputs/sweeps/g"
    pgid, seconds = stop_after_the_first_result(grid, sweep_dir, signal.SIGINT)
    out, err = output(tmp_path, "a")
    assert grid.returncode == 130, out[-3000:] + err[-3000:]
    assert "did not stop" not in err, f"the runs were killed, {seconds:.0f} s after the signal"
    assert "[sweep] grid stopped by SIGINT: " in out and "did not run." in out
    statuses = list(results(sweep_dir).values())
    assert 0 < statuses.count("ok") < N_SMOKE
    assert set(statuses) <= {"ok", "interrupted"}
    assert group_alive(pgid) == []
