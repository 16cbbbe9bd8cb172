"""Memory: peak resident memory of training and of evaluation on the benchmark set, each in a fresh
`train.py` process (RUSAGE_CHILDREN's ru_maxrss: the largest process, DataLoader workers included).

    python bench/memory.py [--quick]
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import common


def overrides(s: common.Size, out: Path) -> list[str]:
    return [
        f"data.root={common.dataset(s)}",
        "data.generate=null",
        f"data.categories=[{','.join(s.categories)}]",
        f"data.image_size={s.image_size}",
        f"data.batch_size={s.batch_size}",
        f"data.cache_dir={common.CACHE / 'decode'}",
        f"model.net.depth={4 if s.image_size >= 64 else 3}",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
        f"output_dir={out}",
    ]


def run(quick: bool) -> str:
    s = common.size(quick)
    tmp = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    env = common.offline_env(tmp)
    py = sys.executable
    base = [py, "-c", "import torch, lightning, ae_lab.module, ae_lab.data.datamodule"]
    # Training reaches its peak within the first steps; a few batches keep this short.
    train = [
        py, "train.py", *overrides(s, tmp / "train"), "logger=none", "test=false",
        "trainer.max_epochs=1", "trainer.limit_train_batches=4", "trainer.limit_val_batches=2",
    ]  # fmt: skip
    ckpt = tmp / "train" / "checkpoints" / "last.ckpt"
    evaluate = [py, "train.py", *overrides(s, tmp / "eval"), "train=false", f"ckpt_path={ckpt}"]
    rows = []
    for name, argv in (
        ("python + torch + lightning + ae_lab imported", base),
        ("training (data in memory, fit 4 steps + validation)", train),
        ("evaluation of the whole test set with W&B media (offline)", evaluate),
        ("evaluation, no logger (maps and metrics only)", [*evaluate, "logger=none"]),
    ):
        wall, mib = common.run_child(argv, env)
        rows.append([name, mib, wall])
    dm = common.datamodule(s)
    dm.setup()
    data_mib = (
        sum(
            dm.dataset(k).images.nbytes + dm.dataset(k).masks.nbytes
            for k in ("train", "val", "test")
        )
        / 2**20
    )
    head = (
        f"Memory: {len(s.categories)} classes ({len(dm.dataset('train')) + len(dm.dataset('val'))} "
        f"train, {len(dm.dataset('test'))} test images at {s.image_size} px, batch {s.batch_size}); "
        f"the uint8 images and masks held in memory take {data_mib:.1f} MiB; one run each "
        f"(memory is not timing noise); load average {os.getloadavg()[0]:.1f}"
    )
    return head + "\n\n" + common.table(["process", "peak RSS MiB", "wall seconds"], rows)


def main(argv: list[str] | None = None) -> str:
    args = common.parser(__doc__, rounds=False).parse_args(argv)
    return common.emit(run(args.quick))


if __name__ == "__main__":
    main()
