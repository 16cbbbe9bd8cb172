"""Train and evaluate one autoencoder: `python train.py [group=option ...] [key=value ...]`.

Examples:
    python train.py                                   # synthetic data, classic AE, SSIM loss, W&B
    python train.py model=unet loss=ssim_l1 trainer.max_epochs=50
    python train.py data=mvtec data.root=/path/to/mvtec_anomaly_detection
    python train.py train=false ckpt_path=outputs/.../checkpoints/last.ckpt   # evaluate only
    python train.py -m model=ae,unet loss=l1,l2,ssim,ssim_l1   # the 8-run grid (Hydra multirun)
    python train.py --help                            # every config group and option
"""

import os
import sys

import hydra
from omegaconf import DictConfig

from ae_lab.config import check_output_root
from ae_lab.sweep import hydra_argv


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    # Imported here: `--help` and a bad override are answered before torch and Lightning load.
    from ae_lab.cli import run_cli
    from ae_lab.training import train

    result = run_cli(train, cfg)  # also writes cfg.result_file, when set
    # Hydra sweepers/optimisers read the returned value.
    return result.get("test/image_auroc")


if __name__ == "__main__":
    # Only a process started by `wandb agent` gets its arguments translated; a plain command line
    # (Hydra's sweep syntax included) reaches Hydra as typed.
    sys.argv = hydra_argv(sys.argv, os.environ)
    check_output_root(sys.argv[1:])  # Hydra creates the run folder before train() runs
    main()
