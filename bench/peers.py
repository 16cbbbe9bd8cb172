"""Peers side by side: anomalib's GANomaly and DRAEM beside ae-lab's configurations, on the same
MVTec-layout classes, at the same image size, with the same CPU budget, in one run.

    pip install -e ".[peers]" into its own venv (anomalib brings its own torch), e.g.
        python -m venv .venv-peers && .venv-peers/bin/pip install "anomalib==2.7.0"
    python bench/peers.py --root ../shared/realdata/mvtec_screw_256 --category screw_matched \\
        --config default --config ae-ssim --peer-python .venv-peers/bin/python
    python bench/peers.py --synthetic --config default --config unet_coarse-ssim --seed 42

ae-lab's rows are the project's own `train(cfg)` (bench/detection.py; with `--synthetic`, the
demo's settings: one model for the four classes) and run first; the slowest sets the peers'
budget (or `--budget`). Each peer runs in the peers' interpreter (`--peer-python`), one model per
class with Lightning's `max_time` set to its share of the budget, so a peer that cannot converge
in the budget is stopped and tested as it is, and the table says how many epochs it reached. Both
see the same train/good, test/good and test/<defect> folders; ae-lab aligns the screw (its data
pipeline), the peers use anomalib's own (resize only). DRAEM's `dtd_dir` is an empty folder, so
its anomaly source is Perlin noise (nothing downloaded).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PEERS = ("ganomaly", "draem")


def run_peer(name: str, root: Path, category: str, size: int, minutes: float, seed: int) -> dict:
    """Train and test one anomalib model (runs inside the peers' interpreter)."""
    from anomalib.data import Folder
    from anomalib.engine import Engine
    from anomalib.models import Draem, Ganomaly
    from lightning.pytorch import seed_everything

    seed_everything(seed)
    tmp = Path(tempfile.mkdtemp())
    data = Folder(
        name=category,
        root=root / category,
        normal_dir="train/good",
        abnormal_dir=[d for d in (root / category / "test").iterdir() if d.name != "good"],
        normal_test_dir="test/good",
        train_batch_size=32,
        eval_batch_size=32,
        num_workers=0,
        val_split_mode="from_train",  # like ae-lab: the test set stays whole
        val_split_ratio=0.1,
        seed=seed,
    )
    cls = {"ganomaly": Ganomaly, "draem": Draem}[name]
    extra = {"dtd_dir": tmp / "dtd_empty"} if name == "draem" else {}
    if extra:
        extra["dtd_dir"].mkdir()
    pre = cls.configure_pre_processor(image_size=(size, size))
    model = cls(pre_processor=pre, visualizer=False, **extra)  # no image files written
    engine = Engine(
        max_epochs=1000,
        max_time={"minutes": minutes},
        accelerator="cpu",
        devices=1,
        logger=False,
        default_root_dir=tmp,
        enable_progress_bar=False,
    )
    start = time.perf_counter()
    engine.fit(model=model, datamodule=data)
    fit_s = time.perf_counter() - start
    metrics = engine.test(model=model, datamodule=data, verbose=False)[0]
    return {
        "image_auroc": float(metrics["image_AUROC"]),
        "epochs": engine.trainer.current_epoch,
        "fit_min": fit_s / 60,
        "test_min": (time.perf_counter() - start - fit_s) / 60,
    }


def main(argv: list[str] | None = None) -> str:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", help="an MVTec-layout folder")
    p.add_argument("--category", action="append", help="class folder(s) under --root")
    p.add_argument("--synthetic", action="store_true", help="the demo's set (sweeps/demo.yaml)")
    p.add_argument("--config", action="append", help="ae-lab rows (bench/detection.py names)")
    p.add_argument("--peer", action="append", choices=PEERS, help="default: both")
    p.add_argument("--peer-python", default=".venv-peers/bin/python", help="anomalib's interpreter")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--threads", type=int, default=1, help="torch threads per run (both sides)")
    p.add_argument("--jobs", type=int, default=2, help="rows trained at the same time")
    p.add_argument(
        "--budget", type=float,
        help="peer training minutes in all (split evenly over the classes); default: the wall time "
        "of ae-lab's slowest row, measured first in this run",
    )  # fmt: skip
    p.add_argument("--worker", choices=PEERS, help=argparse.SUPPRESS)
    p.add_argument("--ae-lab", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.synthetic:
        from bench.detection import compose, demo_overrides

        cfg = compose(demo_overrides())
        args.root, args.category = cfg.data.root, list(cfg.data.categories)
    if not args.root or not args.category:
        p.error("give --root and --category (or --synthetic)")
    root = Path(args.root).resolve()
    if args.worker:  # inside the peers' interpreter: one model, one class, a JSON line out
        import torch

        torch.set_num_threads(args.threads)
        result = run_peer(
            args.worker, root, args.category[0], args.image_size, args.budget, args.seed
        )
        print("RESULT " + json.dumps(result), flush=True)
        return ""
    if args.ae_lab:  # one ae-lab row, all classes in one model as the demo trains them
        import torch

        from bench.detection import CONFIGS, compose, demo_overrides, run_one

        torch.set_num_threads(args.threads)
        data = ["data=mvtec", f"data.root={root}", f"data.categories=[{','.join(args.category)}]"]
        data = (
            [o for o in demo_overrides() if not o.startswith("seed=")] if args.synthetic else data
        )
        data += [f"data.image_size={args.image_size}", f"seed={args.seed}"]
        metrics, _ = run_one([*data, *CONFIGS[args.ae_lab]])
        per_class = {c: metrics.get(f"test/image_auroc/{c}", float("nan")) for c in args.category}
        epochs = f"{compose(data).trainer.max_epochs} (trainer.max_epochs)"
        print("RESULT " + json.dumps({"image_auroc": per_class, "epochs": epochs}), flush=True)
        return ""
    if not Path(args.peer_python).is_file():  # before ae-lab's rows spend minutes training
        p.error(
            f"no anomalib interpreter at --peer-python {args.peer_python}: create it with "
            '`python -m venv .venv-peers && .venv-peers/bin/pip install "anomalib==2.7.0"`'
        )
    return compare(args, root)


def compare(args: argparse.Namespace, root: Path) -> str:
    """Every row its own process with `--threads` torch threads, `--jobs` at a time, so ae-lab and
    the peers share the machine alike; the peers start when ae-lab's rows have set the budget."""
    from bench.common import emit, table

    common = ["--root", str(root), "--seed", str(args.seed), "--threads", str(args.threads)]
    common += ["--image-size", str(args.image_size)]
    # The peers' interpreter has no ae_lab: they get the demo set's folder and classes resolved.
    classes = [x for cat in args.category for x in ("--category", cat)]
    classes += ["--synthetic"] if args.synthetic else []
    ours = {
        f"ae-lab {c}": [sys.executable, __file__, "--ae-lab", c, *common, *classes]
        for c in args.config or ["default"]
    }
    env = os.environ | {"OMP_NUM_THREADS": str(args.threads)}
    logs = Path(tempfile.mkdtemp(prefix="peers-"))  # files, not pipes: a full pipe would block
    results = run_jobs(ours, args.jobs, env, logs)
    budget = args.budget or max(r["minutes"] for r in results.values())
    per_class = budget / len(args.category)
    peers = [f"anomalib {peer}" for peer in args.peer or PEERS]
    worker = [str(args.peer_python), __file__, *common, "--budget", str(per_class), "--worker"]
    theirs = {
        f"{name} [{cat}]": [*worker, name.split()[1], "--category", cat]
        for name in peers
        for cat in args.category
    }
    results |= run_jobs(theirs, args.jobs, env, logs)
    rows = []
    for name in [*ours, *peers]:
        if name in ours:  # one run for all classes
            r = results[name]
            aurocs, epochs, minutes = r.get("image_auroc", {}), r.get("epochs", r.get("error")), r["minutes"]  # fmt: skip
        else:  # one run per class
            parts = {cat: results[f"{name} [{cat}]"] for cat in args.category}
            aurocs = {cat: r.get("image_auroc") for cat, r in parts.items()}
            stopped = sum(r.get("fit_min", 0) >= per_class * 0.98 for r in parts.values())
            epochs = "/".join(str(r.get("epochs", r.get("error"))) for r in parts.values())
            epochs += f" ({stopped} of {len(parts)} stopped by the budget)"
            minutes = sum(r["minutes"] for r in parts.values())
        values = [aurocs.get(c, "failed") or "failed" for c in args.category]
        mean = "failed" if "failed" in values else statistics.mean(values)
        rows.append([name, *values, mean, epochs, minutes])
    head = (
        f"Peers on {'+'.join(args.category)} at {args.image_size} px, seed {args.seed}, "
        f"{args.threads} torch thread(s) per run, {args.jobs} runs at a time; peer training budget "
        f"{budget:.1f} min in all ({per_class:.1f} per class: anomalib trains one model per class, "
        f"ae-lab one for all); load average {os.getloadavg()[0]:.1f}\n\n"
    )
    columns = ["model", *args.category, "mean", "epochs", "minutes (fit + test)"]
    return emit(head + table(columns, rows))


def run_jobs(jobs: dict[str, list[str]], n: int, env: dict, logs: Path) -> dict[str, dict]:
    """Run `jobs` (name -> command), `n` at a time; each prints `RESULT <json>`; failures keep why."""
    running: dict[str, tuple[subprocess.Popen, float]] = {}
    results: dict[str, dict] = {}
    pending = list(jobs)
    while pending or running:
        while pending and len(running) < n:
            name = pending.pop(0)
            out, err = (open(logs / f"{name}.{s}", "w") for s in ("out", "err"))  # noqa: SIM115
            running[name] = (
                subprocess.Popen(jobs[name], stdout=out, stderr=err, env=env),
                time.perf_counter(),
            )
        time.sleep(2)
        for name, (proc, start) in list(running.items()):
            if proc.poll() is None:
                continue
            del running[name]
            out, err = ((logs / f"{name}.{s}").read_text() for s in ("out", "err"))
            lines = [ln for ln in out.splitlines() if ln.startswith("RESULT ")]
            if proc.returncode or not lines:
                why = (err.strip().splitlines() or ["no output"])[-1][:120] + f" (logs: {logs})"
                results[name] = {"error": why}
            else:
                results[name] = json.loads(lines[-1][len("RESULT ") :])
            results[name]["minutes"] = (time.perf_counter() - start) / 60
            print(f"[peers] {name}: {results[name]}", file=sys.stderr, flush=True)
    return results


if __name__ == "__main__":
    main()
