"""Peers side by side: anomalib's GANomaly and DRAEM beside ae-lab's configurations, on the same
MVTec-layout class, at the same image size, with the same CPU budget, in one run.

    pip install -e ".[peers]" into its own venv (anomalib brings its own torch), e.g.
        python -m venv .venv-peers && .venv-peers/bin/pip install "anomalib==2.7.0"
    python bench/peers.py --root ../shared/realdata/mvtec_screw_256 --category screw_matched \\
        --config default --config ae-ssim --peer-python .venv-peers/bin/python

ae-lab's rows are the project's own `train(cfg)` (bench/detection.py); each peer runs in the peers'
interpreter (`--peer-python`) with Lightning's `max_time` set to the budget (ae-lab's slowest run),
so a peer that cannot converge in the budget is stopped and tested as it is, and the
table says how many epochs it reached. Both see the same train/good, test/good and test/<defect>
folders; ae-lab aligns the screw (its data pipeline), the peers use anomalib's own (resize only).
DRAEM's `dtd_dir` is an empty folder, so its anomaly source is Perlin noise (nothing downloaded).
"""

from __future__ import annotations

import argparse
import json
import os
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
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", required=True, help="an MVTec-layout folder")
    p.add_argument("--category", required=True, help="one class folder under --root")
    p.add_argument("--config", action="append", help="ae-lab rows (bench/detection.py names)")
    p.add_argument("--peer", action="append", choices=PEERS, help="default: both")
    p.add_argument("--peer-python", default=".venv-peers/bin/python", help="anomalib's interpreter")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--threads", type=int, default=1, help="torch threads per run (both sides)")
    p.add_argument("--jobs", type=int, default=2, help="rows trained at the same time")
    p.add_argument(
        "--budget", type=float, default=11.0,
        help="peer training minutes: ae-lab's slowest run (the default's 60 epochs at 1 thread, "
        "bench/README.md's detection table)",
    )  # fmt: skip
    p.add_argument("--worker", choices=PEERS, help=argparse.SUPPRESS)
    p.add_argument("--ae-lab", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    root = Path(args.root).resolve()
    if args.worker:  # inside the peers' interpreter: one model, a JSON line out
        import torch

        torch.set_num_threads(args.threads)
        result = run_peer(args.worker, root, args.category, args.image_size, args.budget, args.seed)
        print("RESULT " + json.dumps(result), flush=True)
        return ""
    if args.ae_lab:  # one ae-lab row: the project's own train(cfg), as bench/detection.py runs it
        import torch

        from bench.detection import CONFIGS, run_one

        torch.set_num_threads(args.threads)
        data = ["data=mvtec", f"data.root={root}", f"data.categories=[{args.category}]"]
        data += [f"data.image_size={args.image_size}", f"seed={args.seed}"]
        metrics, _ = run_one([*data, *CONFIGS[args.ae_lab]])
        result = {"image_auroc": metrics["test/image_auroc"], "epochs": "60 (trainer.max_epochs)"}
        print("RESULT " + json.dumps(result), flush=True)
        return ""

    from bench.common import emit, table

    # Every row is its own process with `--threads` torch threads, `--jobs` at a time, so ae-lab
    # and the peers share the machine alike.
    common = ["--root", str(root), "--category", args.category, "--seed", str(args.seed),
              "--threads", str(args.threads), "--image-size", str(args.image_size)]  # fmt: skip
    jobs = {
        f"ae-lab {c}": [sys.executable, __file__, "--ae-lab", c, *common]
        for c in args.config or ["default"]
    }
    for peer in args.peer or PEERS:
        jobs[f"anomalib {peer}"] = [str(args.peer_python), __file__, "--worker", peer, *common,
                                    "--budget", str(args.budget)]  # fmt: skip
    env = os.environ | {"OMP_NUM_THREADS": str(args.threads)}
    logs = Path(tempfile.mkdtemp(prefix="peers-"))  # files, not pipes: a full pipe would block
    running: dict[str, tuple[subprocess.Popen, float]] = {}
    results: dict[str, list] = {}
    pending = list(jobs)
    while pending or running:
        while pending and len(running) < args.jobs:
            name = pending.pop(0)
            out, err = (open(logs / f"{name}.{s}", "w") for s in ("out", "err"))  # noqa: SIM115
            proc = subprocess.Popen(jobs[name], stdout=out, stderr=err, env=env)
            running[name] = (proc, time.perf_counter())
        time.sleep(2)
        for name, (proc, start) in list(running.items()):
            if proc.poll() is None:
                continue
            del running[name]
            out, err = ((logs / f"{name}.{s}").read_text() for s in ("out", "err"))
            minutes = (time.perf_counter() - start) / 60
            lines = [ln for ln in out.splitlines() if ln.startswith("RESULT ")]
            if proc.returncode or not lines:
                why = (err.strip().splitlines() or ["no output"])[-1][:120] + f" (logs: {logs})"
                results[name] = [name, "failed", why, minutes]
            else:
                r = json.loads(lines[-1][len("RESULT ") :])
                stopped = r.get("fit_min", 0) >= args.budget * 0.98
                epochs = f"{r['epochs']} (stopped by the budget)" if stopped else r["epochs"]
                results[name] = [name, r["image_auroc"], epochs, minutes]
            print(f"[peers] {results[name]}", file=sys.stderr, flush=True)
    rows = [results[name] for name in jobs]
    budget = args.budget
    head = (
        f"Peers on {args.category} at {args.image_size} px, seed {args.seed}, {args.threads} "
        f"torch thread(s) per run, {args.jobs} runs at a time, peer training budget {budget:.1f} "
        f"min; load average "
        f"{os.getloadavg()[0]:.1f}\n\n"
    )
    return emit(head + table(["model", "image AUROC", "epochs", "minutes (fit + test)"], rows))


if __name__ == "__main__":
    main()
