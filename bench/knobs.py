"""Training knobs on CPU: matmul precision, channels-last, bf16 autocast, threads, batch size and
torch.compile, each against the project's defaults (model-only ceiling: batches in memory).

    python bench/knobs.py [--quick] [--rounds 5] [--steps 6]
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable, Iterator

import common
import torch


class KnobTrainer(common.Trainer):
    """common.Trainer plus bf16 autocast (what Lightning's `precision: bf16-mixed` does)."""

    def __init__(
        self, net: torch.nn.Module, channels_last: bool = False, bf16: bool = False
    ) -> None:
        if channels_last:
            net = net.to(memory_format=torch.channels_last)
        super().__init__(net, channels_last)
        self.bf16 = bf16

    def step(self, x: torch.Tensor) -> float:
        if not self.bf16:
            return super().step(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = torch.nn.functional.mse_loss(self.net(x).float(), x)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return loss.item()


def batches(s: common.Size, batch_size: int) -> Iterator[common.Images]:
    g = torch.Generator().manual_seed(0)
    data = [torch.rand(batch_size, 3, s.image_size, s.image_size, generator=g) for _ in range(4)]
    return common.forever(lambda: (common.Images(x) for x in data))


def variant(
    trainer: common.Trainer, it: Iterator, steps: int, precision: str = "high", threads: int = 0
) -> Callable[[], float]:
    def go() -> float:
        saved = (torch.get_float32_matmul_precision(), torch.get_num_threads())
        torch.set_float32_matmul_precision(precision)
        torch.set_num_threads(threads or saved[1])
        try:
            return common.timed_steps(trainer, it, steps, warmup=1)
        finally:
            torch.set_float32_matmul_precision(saved[0])
            torch.set_num_threads(saved[1])

    return go


def knob_table(quick: bool, rounds: int, steps: int) -> str:
    s = common.size(quick)
    torch.manual_seed(0)
    net = common.conv_ae(s, channels_last=False)
    b = s.batch_size
    t = lambda **kw: KnobTrainer(copy.deepcopy(net), **kw)  # noqa: E731
    cl = lambda **kw: t(channels_last=True, **kw)  # noqa: E731
    default = "project default (fp32, channels-last, matmul 'high')"
    variants = {
        default: variant(cl(), batches(s, b), steps),
        "the default again (null control: shows the noise)": variant(cl(), batches(s, b), steps),
        "channels-last off (NCHW, the old default)": variant(t(), batches(s, b), steps),
        "matmul precision 'highest'": variant(cl(), batches(s, b), steps, "highest"),
        "matmul precision 'medium' (bf16 matmuls)": variant(cl(), batches(s, b), steps, "medium"),
        "bf16 autocast (precision=bf16-mixed)": variant(cl(bf16=True), batches(s, b), steps),
        "torch threads 1": variant(cl(), batches(s, b), steps, threads=1),
        f"batch {b // 2}": variant(cl(), batches(s, b // 2), steps * 2),
        f"batch {b * 2}": variant(cl(), batches(s, b * 2), max(1, steps // 2)),
    }
    times = common.interleaved(variants, rounds)
    base = common.median(times[default])
    rows = [[k, common.median(v), common.median(v) / base] for k, v in times.items()]
    head = (
        f"Training knobs: ConvAutoencoder at {s.image_size} px, batch {b} unless stated, AdamW, "
        f"batches in memory; median of {rounds} interleaved rounds of {steps} steps; torch threads "
        f"{torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}"
    )
    return head + "\n\n" + common.table(["variant", "train images/s", "x default"], rows)


def compile_table(rounds: int) -> str:
    """torch.compile at the --quick size: compile time against the steady-state speed-up."""
    s = common.QUICK
    torch.manual_seed(0)
    net = common.conv_ae(s)
    eager, compiled = (
        common.Trainer(copy.deepcopy(net)),
        common.Trainer(torch.compile(copy.deepcopy(net))),
    )
    x = next(batches(s, s.batch_size)).image
    first = {}
    for name, trainer in (("eager", eager), ("compiled", compiled)):
        start = time.perf_counter()
        trainer.step(x)
        first[name] = time.perf_counter() - start
    steps = 20
    times = common.interleaved(
        {
            "eager": lambda: common.timed_steps(eager, batches(s, s.batch_size), steps, 1),
            "compiled": lambda: common.timed_steps(compiled, batches(s, s.batch_size), steps, 1),
        },
        rounds,
    )
    rate = {k: common.median(v) for k, v in times.items()}
    per_step = {k: s.batch_size / v for k, v in rate.items()}
    saved = per_step["eager"] - per_step["compiled"]
    extra = first["compiled"] - first["eager"]
    breakeven = f"{extra / saved:.0f}" if saved > 0 else "never"
    rows = [
        ["eager", first["eager"], rate["eager"], "-"],
        ["torch.compile (inductor)", first["compiled"], rate["compiled"], breakeven],
    ]
    head = (
        f"torch.compile at the --quick size ({s.image_size} px, batch {s.batch_size}); median of "
        f"{rounds} interleaved rounds of {steps} steps"
    )
    headers = ["mode", "first step s (compile)", "steady images/s", "steps to pay back compile"]
    return head + "\n\n" + common.table(headers, rows)


def main(argv: list[str] | None = None) -> str:
    parser = common.parser(__doc__)
    parser.add_argument("--steps", type=int, default=None, help="timed steps per round")
    parser.add_argument("--skip-compile", action="store_true", help="no torch.compile table")
    args = parser.parse_args(argv)
    rounds = common.rounds_for(args, 2, 5)
    out = knob_table(args.quick, rounds, args.steps or (2 if args.quick else 6))
    if not args.skip_compile:
        out += "\n\n" + compile_table(rounds)
    return common.emit(out)


if __name__ == "__main__":
    main()
