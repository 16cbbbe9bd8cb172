"""What the benchmarks share: the MVTec-sized synthetic set, interleaved timing, tables, subprocesses.

Every figure is measured inside one script run, with the variants interleaved (A B C, C B A, ...)
so that load from other processes on a shared machine hits all of them alike; tables show medians.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
CACHE = BENCH_DIR / ".cache"  # ignored by git (`.cache/`)
CATEGORIES = ("cable", "capsule", "screw", "transistor")


@dataclass(frozen=True)
class Size:
    """A benchmark dataset: `n_train`/`n_test` images per class, PNGs of `source_px` pixels."""

    categories: tuple[str, ...]
    n_train: int
    n_test: int
    source_px: int
    image_size: int = 128  # what the model sees
    batch_size: int = 32

    @property
    def name(self) -> str:
        return (
            f"synthetic_{len(self.categories)}cls_n{self.n_train}-{self.n_test}_{self.source_px}px"
        )


class Images(NamedTuple):
    """A batch of the baselines' loaders, read like the project's `Batch` (`.image`); the
    DataLoader's default collate keeps the type."""

    image: Tensor


# MVTec's four classes hold 976 train and 542 test images; the generator takes one count per
# class, so 4 x 244 = 976 and 4 x 136 = 544.
FULL = Size(CATEGORIES, n_train=244, n_test=136, source_px=256)
QUICK = Size(("cable", "screw"), n_train=10, n_test=6, source_px=64, image_size=32, batch_size=4)


def size(quick: bool) -> Size:
    return QUICK if quick else FULL


def dataset(s: Size) -> Path:
    """The synthetic set of size `s` under bench/.cache, generated on first use."""
    from ae_lab.data import synthetic

    root = CACHE / s.name
    params = dict(
        categories=s.categories, n_train=s.n_train, n_test=s.n_test, image_size=s.source_px
    )
    if not synthetic.is_complete(root, **params):
        print(f"[bench] generating {s.name} (once) ...", file=sys.stderr, flush=True)
        synthetic.generate(root, seed=0, **params)
    return root


def datamodule(s: Size, cache_dir: Path | None = None, **kwargs):
    """The project's MVTecDataModule on the benchmark set (decode cache under bench/.cache)."""
    from ae_lab.data.datamodule import MVTecDataModule

    kwargs.setdefault("batch_size", s.batch_size)
    return MVTecDataModule(
        dataset(s),
        categories=s.categories,
        image_size=s.image_size,
        cache_dir=cache_dir or CACHE / "decode",
        **kwargs,
    )


def conv_ae(s: Size, channels_last: bool = True) -> torch.nn.Module:
    """The fixed network of the throughput benchmarks (the default `model=ae`), channels-last like
    the project's default `torch.channels_last: true`."""
    from ae_lab.models import ConvAutoencoder

    depth = 4 if s.image_size >= 64 else 3
    net = ConvAutoencoder(image_size=s.image_size, depth=depth, latent_dim=128)
    return net.to(memory_format=torch.channels_last) if channels_last else net


class Trainer:
    """A real training loop: forward, L2 loss, backward, AdamW step; the same for every variant."""

    def __init__(self, net: torch.nn.Module, channels_last: bool = False) -> None:
        self.net = net.train()
        self.opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-5)
        self.channels_last = channels_last

    def step(self, x: Tensor) -> float:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        loss = torch.nn.functional.mse_loss(self.net(x), x)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return loss.item()


def forever(make_iter: Callable[[], Iterator]) -> Iterator:
    """Epoch after epoch of `make_iter()` (a DataLoader's `iter`), without end."""
    while True:
        yield from make_iter()


def timed_steps(trainer: Trainer, batches: Iterator, steps: int, warmup: int) -> float:
    """Images per second over `steps` training steps, after `warmup` untimed ones.

    The untimed steps drain what a loader's workers prefetched while other variants ran.
    """
    for _ in range(warmup):
        trainer.step(next(batches).image)
    n, start = 0, time.perf_counter()
    for _ in range(steps):
        x = next(batches).image
        trainer.step(x)
        n += len(x)
    return n / (time.perf_counter() - start)


def interleaved(variants: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Call each variant once per round, order reversed every other round; all results per name."""
    names = list(variants)
    out: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            out[name].append(variants[name]())
    return out


def median(values: list[float]) -> float:
    return statistics.median(values)


def table(headers: list[str], rows: list[list[object]]) -> str:
    """A Markdown table; floats with 3 significant digits."""

    def cell(v: object) -> str:
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def offline_env(tmp: Path) -> dict[str, str]:
    """Environment for child processes: W&B offline and silent into `tmp`."""
    return {
        **os.environ,
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "WANDB_DIR": str(tmp),
        "PYTHONPATH": str(REPO),
    }


def run_child(argv: list[str], env: dict[str, str], cwd: Path = REPO) -> tuple[float, float]:
    """Run `argv` in a fresh process; returns (wall seconds, peak RSS in MiB of its largest process).

    A small wrapper process runs the command and reads RUSAGE_CHILDREN, so the figure is the
    command's own peak and not that of earlier children of this script.
    """
    wrapper = (
        "import resource, subprocess, sys, time\n"
        "t = time.perf_counter()\n"
        "rc = subprocess.run(sys.argv[1:]).returncode\n"
        "dt = time.perf_counter() - t\n"
        "print(f'{dt} {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}')\n"
        "sys.exit(rc)\n"
    )
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.run(
            [sys.executable, "-c", wrapper, *argv],
            env=env,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        if proc.returncode != 0:
            log.seek(0)
            raise RuntimeError(
                f"{' '.join(argv)} failed ({proc.returncode}):\n{log.read()[-3000:]}"
            )
    wall, rss_kib = proc.stdout.strip().splitlines()[-1].split()
    return float(wall), int(rss_kib) / 1024


def parser(doc: str, rounds: bool = True) -> argparse.ArgumentParser:
    """The command line every benchmark shares: `--quick` (smoke-test size) and `--rounds`."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny size (smoke test)")
    if rounds:
        p.add_argument("--rounds", type=int, default=None, help="interleaved rounds (median)")
    return p


def rounds_for(args: argparse.Namespace, quick: int, full: int) -> int:
    return args.rounds or (quick if args.quick else full)


def emit(table_text: str) -> str:
    """Print a benchmark's tables (flushed: bench/run.py streams them) and return them."""
    print(table_text, flush=True)
    return table_text


def simple_main(
    doc: str, run: Callable[[bool, int], str], argv: list[str] | None, quick: int, full: int
) -> str:
    """`main` of a benchmark whose `run(quick, rounds)` takes no other option."""
    args = parser(doc).parse_args(argv)
    return emit(run(args.quick, rounds_for(args, quick, full)))
