"""Detection quality: image AUROC of the grid's configs on any MVTec-layout class, over seeds, beside
the global-statistics baselines (mean grey, grey std) that tell structure from a brightness shortcut.

    python bench/detection.py --root ../shared/realdata/mvtec_screw_256 --category screw_matched
    python bench/detection.py --root PATH --category screw_matched --category screw \\
        --config ae-l2 --config unet-ssim --seeds 0 1 2
    python bench/detection.py --synthetic            # the demo's synthetic set, 4 classes jointly

Each run is the project's own `train(cfg)` (composed from conf/ with the overrides shown), without
W&B, so the numbers are what `python train.py ...` with the same overrides reports.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import REPO, emit, table

# Named configurations: overrides on top of conf/config.yaml (the grid's model x loss, plus
# variants measured in bench/README.md). `default` is `python train.py` as shipped.
CONFIGS: dict[str, list[str]] = {
    "default": [],
    **{
        f"{m}-{loss}": [f"model={m}", f"loss={loss}"]
        for m in ("ae", "unet", "unet_coarse")
        for loss in ("l1", "l2", "ssim", "ssim_l1")
    },
    "default-no-align": ["data.align=[]"],
    "default-const-lr": ["scheduler=null", "optimizer.lr=1e-3"],
    "default-mean-score": ["scoring.reduction=mean", "scoring.sigma=0"],
    "default-ssim-map": ["scoring.map=ssim"],
    "unet-deep-skips": ["model=unet", "model.net.skip_levels=[2,3]"],
}


def demo_overrides() -> list[str]:
    """The fixed (`value:`) settings of sweeps/demo.yaml as overrides: the demo's data and budget."""
    import yaml

    from ae_lab.sweep import hydra_value

    params = yaml.safe_load((REPO / "sweeps" / "demo.yaml").read_text())["parameters"]
    return [f"{k}={hydra_value(v['value'])}" for k, v in params.items() if "value" in v]


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        return hydra_compose("config", overrides=overrides)


def baselines(cfg) -> dict[str, float]:
    """AUROC of global statistics of the test images (mean grey, grey std), mean over classes."""
    import hydra

    dm = hydra.utils.instantiate(cfg.data)
    ds = dm.dataset("test")
    grey = ds.images.astype(np.float32).mean(axis=1).reshape(len(ds), -1)
    cats = np.asarray(ds.category)
    out = {}
    for name, stat in (("mean grey", grey.mean(axis=1)), ("grey std", grey.std(axis=1))):
        out[name] = float(
            np.mean([roc_auc_score(ds.label[cats == c], stat[cats == c]) for c in np.unique(cats)])
        )
    return out


def run_one(overrides: list[str]) -> tuple[dict[str, float], float]:
    from ae_lab.training import train

    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose([*overrides, "logger=none", f"output_dir={tmp}"])
        start = time.perf_counter()
        result = train(cfg)
    return result, time.perf_counter() - start


def main(argv: list[str] | None = None) -> str:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--root", help="an MVTec-layout folder (e.g. ../shared/realdata/mvtec_screw_256)"
    )
    p.add_argument("--category", action="append", help="class folder(s) under --root, one each")
    p.add_argument("--synthetic", action="store_true", help="the demo's synthetic set instead")
    p.add_argument("--config", action="append", choices=sorted(CONFIGS), help="default: default")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=None, help="trainer.max_epochs override")
    p.add_argument("--set", action="append", default=[], help="extra Hydra override for every run")
    p.add_argument("--quick", action="store_true", help="tiny synthetic smoke test")
    args = p.parse_args(argv)
    if args.quick:
        data = [["data=synthetic", "data.categories=[cable,screw]", "data.generate.n_train=8",
                 "data.generate.n_test=8", "data.generate.image_size=64", "data.image_size=32",
                 "model.net.depth=3", "trainer=debug", f"data.root={tempfile.mkdtemp()}/syn"]]  # fmt: skip
        labels, args.seeds, args.config = ["synthetic (quick)"], [0], ["default", "unet-l2"]
    elif args.synthetic:
        data, labels = [demo_overrides()], ["synthetic demo (4 classes, one model)"]
    else:
        if not args.root or not args.category:
            p.error("give --root and --category (or --synthetic)")
        data = [
            ["data=mvtec", f"data.root={Path(args.root).resolve()}", f"data.categories=[{c}]"]
            for c in args.category
        ]
        labels = list(args.category)
    epochs = [f"trainer.max_epochs={args.epochs}"] if args.epochs else []
    rows, base_rows = [], []
    for label, data_overrides in zip(labels, data, strict=True):
        base = baselines(compose([*data_overrides, *args.set]))
        base_rows.append([label, base["mean grey"], base["grey std"]])
        for name in args.config or ["default"]:
            aurocs, minutes = [], []
            for seed in args.seeds:
                overrides = [*data_overrides, *CONFIGS[name], *epochs, *args.set, f"seed={seed}"]
                result, seconds = run_one(overrides)
                aurocs.append(result.get("test/image_auroc", float("nan")))
                minutes.append(seconds / 60)
                per_class = " ".join(
                    f"{k.split('/')[-1]} {v:.3f}"
                    for k, v in sorted(result.items())
                    if k.startswith("test/image_auroc/") and k.count("/") == 2
                )
                print(f"[detection] {label} {name} seed {seed}: AUROC {aurocs[-1]:.3f} "
                      f"({per_class}) in {seconds / 60:.1f} min", file=sys.stderr, flush=True)  # fmt: skip
            spread = statistics.stdev(aurocs) if len(aurocs) > 1 else 0.0
            rows.append(
                [
                    label,
                    name,
                    f"{statistics.mean(aurocs):.3f} ± {spread:.3f}",
                    " ".join(f"{a:.3f}" for a in aurocs),
                    max(minutes),
                ]
            )
    out = table(
        ["data", "config", "image AUROC (mean ± sd over seeds)", "per seed", "max minutes/run"],
        rows,
    )
    out += "\n\n" + table(["data", "mean-grey AUROC", "grey-std AUROC"], base_rows)
    return emit(out)


if __name__ == "__main__":
    main()
