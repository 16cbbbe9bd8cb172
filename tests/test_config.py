"""ae_lab.config and conf/: the resolvers `import ae_lab` registers, `flatten`, and every config
option composing into a run name and instantiating."""

import itertools
import subprocess
import sys
from pathlib import Path

import hydra
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from ae_lab.config import flatten, short_name
from ae_lab.module import AutoencoderModule
from tests.compose import CONF_DIR, compose_config

REPO = Path(__file__).resolve().parents[1]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def test_importing_the_package_registers_the_resolvers():
    code = (
        "import ae_lab; from omegaconf import OmegaConf; "
        "c = OmegaConf.create({'n': '${ae_lab.name:a b}', 'u': '${ae_lab.uid:}'}); print(c.n, c.u)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    name, uid = proc.stdout.split()
    assert name == "a_b" and len(uid) == 6 and int(uid, 16) >= 0


@pytest.mark.parametrize(
    ("name", "short"),
    [("ae-ssim-z128", "ae-ssim-z128"), ("../../x", "x"), ("a/b c", "a_b_c"), ("...", "run")],
)
def test_run_names_become_one_safe_folder_name(name, short):
    assert short_name(name) == short
    assert OmegaConf.create({"a": "${ae_lab.name:" + name + "}"}).a == short


def test_a_long_run_name_is_cut():
    assert short_name("n" * 300) == "n" * 80


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


def test_flatten_spells_nested_keys_as_wandb_does():
    tree = {"model": {"name": "ae", "net": {"depth": 4}}, "seed": 1, "tags": {}}
    assert flatten(tree) == {"model.name": "ae", "model.net.depth": 4, "seed": 1, "tags": {}}
    assert flatten({"a": {"b": 1}}, "cfg") == {"cfg.a.b": 1}


def test_every_config_option_composes_and_instantiates():
    groups = {g: options(g) for g in ("data", "model", "loss", "trainer", "logger", "scoring")}
    assert {"ae", "unet", "unet_coarse", "vae"} <= set(groups["model"])
    assert {"l1", "l2", "ssim", "ssim_l1"} <= set(groups["loss"])
    assert {"mvtec", "synthetic"} <= set(groups["data"])
    for group, names in groups.items():
        for name in names:
            cfg = compose_config([f"{group}={name}"])
            assert cfg.run_name == f"{cfg.model.name}-{cfg.loss.name}-z{cfg.model.latent_dim}"
            assert hydra.utils.instantiate(cfg.data).categories == list(cfg.data.categories)
    x = torch.rand(2, 3, 32, 32)
    for model, loss in itertools.product(groups["model"], groups["loss"]):
        cfg = compose_config([f"model={model}", f"loss={loss}", "data.image_size=32"])
        module = hydra.utils.instantiate(cfg.model)
        assert isinstance(module, AutoencoderModule) and module.name == model
        assert module.net.encode(x).shape == (2, cfg.model.latent_dim)
        assert module.loss_fn(torch.rand_like(x), x).ndim == 0
