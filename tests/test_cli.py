"""ae_lab.cli and train.py: a user's error as one paragraph naming the config key and the fix
(exit 2), Ctrl-C with the command that goes on (exit 130), the result file and the summary."""

import json
import signal
import subprocess
import sys
from pathlib import Path

import hydra
import pytest
import torch
from omegaconf import DictConfig

from ae_lab.cli import (
    describe,
    interrupted_advice,
    print_summary,
    run_cli,
    setting_keys,
)
from ae_lab.config import check_output_root
from ae_lab.errors import AeLabError, SettingError
from ae_lab.module import AutoencoderModule, NonFiniteLossError, non_finite_tensors
from ae_lab.training import RunInterrupted, build_callbacks, build_module, train
from tests.compose import compose_config, tiny_overrides

REPO = Path(__file__).resolve().parents[1]
CATEGORIES = ["widget", "screw"]


def tiny(root: Path, out: Path, *extra: str) -> DictConfig:
    return compose_config([*tiny_overrides(root, out, CATEGORIES), *extra])


def run_cli_error(capsys, cfg: DictConfig) -> str:
    """What `train.py` prints for a user error (in-process: the same `run_cli` wraps `train`)."""
    with pytest.raises(SystemExit) as caught:
        run_cli(train, cfg)
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "HYDRA_FULL_ERROR" not in err
    assert err.strip().startswith("[ae-lab] error:") and err.strip().count("\n") == 0
    return err


def setting_error(cfg: DictConfig, tmp_path: Path) -> BaseException:
    """The error building the run's parts raises, as train() would meet it."""
    with pytest.raises(Exception) as caught:  # Hydra wraps the library's errors
        hydra.utils.instantiate(cfg.data)
        build_module(cfg)
        build_callbacks(cfg.callbacks, tmp_path)
    return caught.value


# ---- library errors -> config keys ------------------------------------------------------------
def test_an_unknown_argument_of_our_own_node_is_not_blamed_on_lightning():
    cfg = compose_config(["+model.net.foo=1", "data.image_size=32", "model.net.depth=3"])
    with pytest.raises(Exception) as caught:
        hydra.utils.instantiate(cfg.model)
    message = describe(caught.value, cfg)
    assert message.startswith("`ae_lab.module.AutoencoderModule` rejects a setting (model.*)")
    assert "unexpected keyword argument 'foo'" in message and "conf/model/" in message


@pytest.mark.parametrize(
    ("override", "key", "fix"),
    [
        ("data.image_size=100", "data.image_size=100", "image_size=96 or 112"),
        ("data.batch_size=abc", "data.batch_size='abc'", "data.batch_size=..."),
        ("model.net.depth=0", "model.net.depth=0", "model.net.depth=..."),
        ("model.latent_dim=0", "model.latent_dim=0", "model.latent_dim=..."),
        ("model.kl_beta=-1", "model.kl_beta=-1", "model.kl_beta=..."),
        ("loss.fn.window_size=4", "loss.fn.window_size=4", "conf/loss/"),
        ("scoring.sigma=-1", "scoring.sigma=-1", "scoring.sigma=..."),
        ("scoring.map=ssim2", "scoring.map='ssim2'", "conf/scoring/"),
        ("optimizer.lr=-1", "optimizer.lr=-1", "optimizer.<name>=..."),
        ("scheduler.pct_start=2", "scheduler.pct_start=2", "scheduler.<name>=..."),
        ("media.n_images=0", "media.n_images=0", "media.n_images=..."),
    ],
)
def test_a_bad_argument_is_described_by_its_config_key_and_the_fix(override, key, fix, tmp_path):
    cfg = compose_config([override])
    message = describe(setting_error(cfg, tmp_path), cfg)
    assert message.startswith("Invalid setting") and key in message, message
    assert fix in message and "Fix it on the command line" in message, message


def test_keys_are_found_through_interpolations():
    cfg = compose_config(["model=unet"])
    depth = SettingError(type(hydra.utils.instantiate(cfg.model.net)), ("image_size", "depth"), "")
    # model.net.image_size is ${data.image_size}: the key to change is the data's.
    assert setting_keys(cfg, depth) == ["data.image_size", "model.net.depth"]


def test_an_argument_no_config_key_sets_is_still_one_paragraph():
    class Elsewhere:
        pass

    error = SettingError(Elsewhere, "width", "width=-1 must be a finite number >= 0")
    assert describe(error, compose_config()) == f"Invalid setting: {error}."


def test_a_bug_is_not_described_but_a_users_error_under_it_is():
    assert describe(RuntimeError("index out of range"), compose_config()) is None
    try:
        raise RuntimeError("wrapped") from AeLabError("a user's error")
    except RuntimeError as err:
        assert describe(err, compose_config()) == "a user's error"


@pytest.mark.parametrize("clip", ["1.0", "null"])
def test_divergence_names_the_configured_learning_rate_and_what_to_try(clip):
    cfg = compose_config(["optimizer.lr=1e8", f"trainer.gradient_clip_val={clip}"])
    error = NonFiniteLossError("Training stopped at epoch 1, step 4: the loss became nan.", None)
    message = describe(error, cfg)
    # The configured value, not the one-cycle schedule's current (warm-up) one.
    assert message.startswith(str(error)) and "optimizer.lr=1e+08" in message and "lower" in message
    assert ("trainer.gradient_clip_val=1.0" in message) == (clip == "null")
    assert "ckpt_path" not in message
    saved = NonFiniteLossError("stopped.", "/runs/x/checkpoints/last.ckpt")
    assert "`train=false ckpt_path=/runs/x/checkpoints/last.ckpt`" in describe(saved, cfg)


# ---- run_cli: errors, result file, summary ---------------------------------------------------
def test_missing_dataset_root_is_one_clear_paragraph(tmp_path, capsys):
    cfg = compose_config(
        ["data=mvtec", f"data.root={tmp_path / 'missing'}", f"output_dir={tmp_path}", "logger=none"]
    )
    err = run_cli_error(capsys, cfg)
    assert str(tmp_path / "missing") in err and "data=synthetic" in err


def test_error_raised_inside_a_constructor_is_one_paragraph_too(tiny_mvtec, tmp_path, capsys):
    # Hydra wraps exceptions from `_target_` constructors; the entrypoint unwraps ours.
    err = run_cli_error(capsys, tiny(tiny_mvtec, tmp_path, "data.image_size=100"))
    assert "data.image_size=100" in err and "model.net.depth" in err and "96" in err


def test_a_window_larger_than_the_images_names_the_key_and_a_size_that_fits(
    tiny_mvtec, tmp_path, capsys
):
    cfg = tiny(tiny_mvtec, tmp_path, "data.image_size=16", "model.net.depth=2")
    cfg.loss.fn.window_size = 33
    err = run_cli_error(capsys, cfg)
    assert "loss.fn.window_size=33" in err and "below 32" in err
    assert not (tmp_path / "checkpoints").exists()


def test_a_class_listed_twice_names_the_key_and_the_fix(tiny_mvtec, tmp_path, capsys):
    cfg = tiny(tiny_mvtec, tmp_path, "data.categories=[widget,widget]")
    err = run_cli_error(capsys, cfg)
    assert "data.categories" in err and "data.categories=[widget]" in err


def test_the_result_file_holds_the_metrics_or_the_error(tmp_path, capsys):
    result_file = tmp_path / "out" / "result.json"
    cfg = compose_config([f"result_file={result_file}", "logger=none"])
    metrics = {"test/image_auroc": 0.75, "best_checkpoint": "b.ckpt", "output_dir": "o"}
    assert run_cli(lambda cfg: metrics, cfg) == metrics
    written = json.loads(result_file.read_text())
    assert written["status"] == "ok" and written["test/image_auroc"] == 0.75
    assert written["seconds"] >= 0 and written["torch_threads"] == torch.get_num_threads()
    out = capsys.readouterr().out
    assert "[ae-lab] done." in out and "b.ckpt" in out and "0.7500" in out

    def refused(cfg):
        raise AeLabError("Point `data.root` at the dataset.")

    with pytest.raises(SystemExit):
        run_cli(refused, cfg)
    written = json.loads(result_file.read_text())
    assert written["status"] == "failed" and written["error"] == "Point `data.root` at the dataset."

    def bug(cfg):
        raise KeyError("oops")

    with pytest.raises(KeyError):  # a bug keeps its traceback
        run_cli(bug, cfg)
    assert json.loads(result_file.read_text())["error"] == "KeyError: 'oops'"


def test_the_summary_says_how_to_upload_an_offline_run(capsys):
    print_summary({"wandb_dir": "/runs/my run/wandb/offline-run-1", "wandb_mode": "offline"})
    assert "wandb sync '/runs/my run/wandb/offline-run-1'" in capsys.readouterr().out
    print_summary({"wandb_dir": "/w", "wandb_mode": "online", "wandb_url": "https://w/r"})
    out = capsys.readouterr().out
    assert "https://w/r" in out and "wandb sync" not in out


def test_run_folder_stays_inside_the_output_root(tmp_path, capsys, monkeypatch):
    (tmp_path / "afile").touch()
    monkeypatch.setenv("AE_LAB_OUTPUTS", str(tmp_path / "afile" / "runs"))
    with pytest.raises(SystemExit) as caught:
        check_output_root([])
    err = capsys.readouterr().err
    assert caught.value.code == 2 and "afile is not a folder" in err and "AE_LAB_OUTPUTS=" in err
    monkeypatch.delenv("AE_LAB_OUTPUTS")
    check_output_root([f"hydra.run.dir={tmp_path / 'new' / 'run'}"])  # a folder to be made: fine
    with pytest.raises(SystemExit):
        check_output_root([f"hydra.sweep.dir={tmp_path / 'afile'}"])
    assert "hydra.sweep.dir=" in capsys.readouterr().err


# ---- Ctrl-C ------------------------------------------------------------------------------------
def test_the_advice_after_ctrl_c_depends_on_what_was_saved(tmp_path):
    def advice(stage: str, best: str | None = None) -> str:
        return interrupted_advice(RunInterrupted(stage, tmp_path, best, sigterm=False))

    assert "start the run again" in advice("fit")  # nothing saved yet
    assert "Nothing was saved" in advice("test")
    (tmp_path / "last.ckpt").touch()
    assert f"python train.py ckpt_path={tmp_path / 'last.ckpt'}" in advice("fit")
    # Training had finished: evaluate the best checkpoint (or last.ckpt), do not train again.
    best = str(tmp_path / "epoch003.ckpt")
    assert f"python train.py train=false ckpt_path={best}" in advice("test", best)
    assert f"train=false ckpt_path={tmp_path / 'last.ckpt'}" in advice("test")


@pytest.mark.parametrize(("sigterm", "code"), [(False, 130), (True, 143)])
def test_an_interrupted_run_exits_with_the_shells_code(tmp_path, capsys, sigterm, code):
    cfg = compose_config([f"result_file={tmp_path / 'result.json'}", "logger=none"])

    def interrupted(cfg):
        raise RunInterrupted("fit", tmp_path, None, sigterm=sigterm)

    with pytest.raises(SystemExit) as caught:
        run_cli(interrupted, cfg)
    assert caught.value.code == code and "[ae-lab] interrupted" in capsys.readouterr().err
    assert json.loads((tmp_path / "result.json").read_text())["status"] == "interrupted"


@pytest.fixture
def keep_sigint():
    handler = signal.getsignal(signal.SIGINT)
    yield
    signal.signal(signal.SIGINT, handler)  # Lightning ignores further Ctrl-C while stopping


@pytest.mark.slow
def test_ctrl_c_while_training_prints_the_resume_command(
    tiny_mvtec, tmp_path, monkeypatch, capsys, keep_sigint
):
    def interrupt(self):
        if self.current_epoch == 1:  # after epoch 0's last.ckpt
            raise KeyboardInterrupt

    monkeypatch.setattr(AutoencoderModule, "on_train_epoch_start", interrupt, raising=False)
    with pytest.raises(SystemExit) as caught:
        run_cli(train, tiny(tiny_mvtec, tmp_path, "trainer.max_epochs=3"))
    assert caught.value.code == 130
    last = tmp_path / "checkpoints" / "last.ckpt"
    err = capsys.readouterr().err
    assert last.is_file() and f"ckpt_path={last}" in err and "train=false" not in err


@pytest.mark.slow
def test_ctrl_c_while_testing_prints_the_evaluate_only_command(
    tiny_mvtec, tmp_path, monkeypatch, capsys, keep_sigint
):
    def interrupt(self, batch, batch_idx):
        raise KeyboardInterrupt

    monkeypatch.setattr(AutoencoderModule, "test_step", interrupt)
    with pytest.raises(SystemExit) as caught:
        run_cli(train, tiny(tiny_mvtec, tmp_path))
    assert caught.value.code == 130
    (best,) = (tmp_path / "checkpoints").glob("epoch*.ckpt")
    assert f"train=false ckpt_path={best}" in capsys.readouterr().err


@pytest.mark.slow
def test_a_diverging_run_says_what_to_try_and_saves_nothing_non_finite(
    tiny_mvtec, tmp_path, capsys
):
    err = run_cli_error(
        capsys, tiny(tiny_mvtec, tmp_path, "optimizer.lr=1e8", "trainer.max_epochs=3")
    )
    assert "Training stopped at epoch" in err and "optimizer.lr=1e+08" in err and "lower" in err
    assert "gradient_clip_val" not in err  # clipping is already on in trainer=default
    files = sorted((tmp_path / "checkpoints").glob("*.ckpt"))
    for file in files:
        state = torch.load(file, map_location="cpu", weights_only=True)["state_dict"]
        assert not non_finite_tensors(state), file
    if files:
        assert f"ckpt_path={tmp_path / 'checkpoints' / 'last.ckpt'}" in err
    else:
        assert "No checkpoint was saved" in err


# ---- train.py -----------------------------------------------------------------------------------
def run_train_py(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "train.py"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_help_explains_groups():
    proc = run_train_py("--help")
    assert proc.returncode == 0
    for word in ("model", "loss", "data", "trainer", "logger", "unet", "ssim_l1"):
        assert word in proc.stdout


def test_a_bad_value_on_the_command_line_is_one_paragraph(tmp_path):
    """Through train.py and Hydra: exit 2, no traceback, the key and the fix named."""
    proc = run_train_py("data.batch_size=abc", "logger=none", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "data.batch_size='abc'" in proc.stderr and "must be an integer" in proc.stderr
    assert "data.batch_size=..." in proc.stderr
