"""Train and evaluate one autoencoder: `python train.py [group=option ...] [key=value ...]`.

Examples:
    python train.py                                   # synthetic data, classic AE, L2 loss, W&B
    python train.py model=unet loss=ssim_l1 trainer.max_epochs=50
    python train.py data=mvtec data.root=/path/to/mvtec_anomaly_detection
    python train.py train=false ckpt_path=outputs/.../checkpoints/last.ckpt   # evaluate only
    python train.py --help                            # every config group and option
"""

import sys

import hydra
from omegaconf import DictConfig

from ae_lab.cli import agent_argv_to_hydra, is_rank_zero, run_cli, write_result_file
from ae_lab.training import train


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    result = run_cli(train, cfg)
    # The offline sweep runner reads the final metrics from it; under DDP only rank 0 writes it.
    if cfg.get("result_file") and is_rank_zero():
        write_result_file(cfg.result_file, result)
    # Hydra sweepers/optimisers read the returned value.
    return result.get("test/image_auroc")


if __name__ == "__main__":
    sys.argv = agent_argv_to_hydra(sys.argv)
    main()
