"""Compose the real Hydra config in tests, with overrides for a tiny, fast run."""

from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def compose_config(overrides: list[str] | None = None) -> DictConfig:
    """The config `train.py` would see with these command-line overrides."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=overrides or [])


def tiny_overrides(root: Path, out_dir: Path, categories: list[str]) -> list[str]:
    """Overrides for a seconds-long run on a tiny MVTec-layout tree, without W&B."""
    return [
        f"data.root={root}",
        "data.generate=null",
        f"data.categories=[{','.join(categories)}]",
        "data.image_size=32",
        "data.batch_size=4",
        f"data.cache_dir={out_dir / 'cache'}",
        "model.latent_dim=8",
        "model.net.base_channels=8",
        "model.net.depth=3",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
        "logger=none",
        f"output_dir={out_dir}",
    ]
