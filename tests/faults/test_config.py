"""Every numeric setting of the composed config at 0, negative, inf, nan, a string and an absurd
size: the run is refused before training with one paragraph naming the key, or it runs to the
end. Never a traceback, never a crash after training."""

import copy
import math

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from ae_lab.cli import run_cli
from ae_lab.training import train
from tests.compose import compose_config, tiny_overrides

VALUES = ["0", "-1", "inf", "nan", "abc", "1000000000"]


def numeric_keys(node: DictConfig, path: str = "") -> list[str]:
    """The keys of the config's numeric values (interpolated ones are set where they point)."""
    keys = []
    for key in node:
        if OmegaConf.is_interpolation(node, key):
            continue
        full = f"{path}.{key}" if path else str(key)
        value = node[key]
        if isinstance(value, DictConfig):
            keys += numeric_keys(value, full)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            keys.append(full)
    return keys


def base(root, out) -> list[str]:
    return [
        *tiny_overrides(root, out, ["widget", "screw"]),
        "trainer.limit_test_batches=1.0",
    ]


KEYS = numeric_keys(compose_config(["logger=none", "data=mvtec"]))


def test_the_matrix_covers_every_part_of_the_config():
    groups = {key.split(".")[0] for key in KEYS}
    assert {"data", "model", "loss", "scoring", "optimizer", "media", "seed"} <= groups
    assert {"trainer", "callbacks"} <= groups


@pytest.mark.slow
@pytest.mark.parametrize("key", KEYS)
def test_a_bad_number_is_refused_naming_its_key_or_the_run_completes(
    key, tiny_mvtec, tmp_path, capsys
):
    # Composed once and each value applied as Hydra applies a command-line override: composing
    # is half the time of a case.
    composed, parser = compose_config(base(tiny_mvtec, tmp_path)), OverridesParser.create()
    for value in VALUES:
        cfg = copy.deepcopy(composed)
        cfg.output_dir = str(tmp_path / value)
        override = parser.parse_overrides([f"{key}={value}"])[0]
        OmegaConf.update(cfg, key, override.value(), merge=True)
        try:
            result = run_cli(train, cfg)
        except SystemExit as stop:
            err = capsys.readouterr().err.strip()
            assert stop.code == 2, f"{key}={value}: exit {stop.code}\n{err}"
            assert err.startswith("[ae-lab] error:") and "Traceback" not in err, err
            assert "\n" not in err, f"{key}={value}: not one paragraph:\n{err}"
            named = key in err or key.rsplit(".", 1)[-1] in err or "optimizer.lr" in err
            assert named, f"{key}={value}: the message does not name the setting:\n{err}"
            if "Training stopped" not in err:  # a diverged run trains, then says so
                assert not trained(tmp_path / value), f"{key}={value}: refused after training"
            continue
        assert math.isfinite(result["test/image_auroc"]), f"{key}={value}: {result}"


def trained(out) -> bool:
    """A run that trained an epoch left a checkpoint."""
    return any((out / "checkpoints").glob("*.ckpt"))
