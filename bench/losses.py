"""Losses and anomaly maps: cost per batch of each reconstruction loss (forward + backward) and of
each anomaly-map variant.

    python bench/losses.py [--quick] [--rounds 5]
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import common
import torch

from ae_lab.losses import L1Loss, L2Loss, SSIML1Loss, SSIMLoss
from ae_lab.scoring import Scoring, anomaly_map


def _ms(fn: Callable[[], object], reps: int) -> Callable[[], float]:
    def timed() -> float:
        start = time.perf_counter()
        for _ in range(reps):
            fn()
        return (time.perf_counter() - start) / reps * 1000

    return timed


def loss_fns(x: torch.Tensor, recon: torch.Tensor) -> dict[str, Callable[[], object]]:
    def fwd_bwd(loss: torch.nn.Module, recon: torch.Tensor = recon) -> Callable[[], object]:
        def go() -> None:
            r = recon.detach().requires_grad_(True)
            loss(r, x).backward()

        return go

    losses = {
        "L1": L1Loss(),
        "L2": L2Loss(),
        "SSIM 11x11": SSIMLoss(11),
        "SSIM 11x11 + L1 (0.84)": SSIML1Loss(11, 0.84),
    }
    out = {f"loss {k}": fwd_bwd(v) for k, v in losses.items()}
    # The project's net is channels-last (torch.channels_last), so its reconstructions are too.
    recon_cl = recon.contiguous(memory_format=torch.channels_last)
    for k in ("SSIM 11x11", "SSIM 11x11 + L1 (0.84)"):
        out[f"loss {k}, channels-last recon"] = fwd_bwd(losses[k], recon_cl)
    return out


def map_fns(x: torch.Tensor, recon: torch.Tensor) -> dict[str, Callable[[], object]]:
    out = {}
    for kind in ("l1", "l2", "ssim"):
        for sigma in (4.0, 0.0):
            cfg = Scoring(map=kind, sigma=sigma)
            smooth = f"Gaussian sigma {sigma:g}" if sigma else "no smoothing"
            out[f"map {kind}, {smooth}"] = (lambda c: lambda: anomaly_map(x, recon, c))(cfg)
    return out


def run(quick: bool, rounds: int) -> str:
    s = common.size(quick)
    torch.manual_seed(0)
    shape = (s.batch_size, 3, s.image_size, s.image_size)
    x = torch.rand(shape)
    recon = (x + 0.05 * torch.randn(shape)).clamp(0, 1)
    fns = loss_fns(x, recon) | map_fns(x, recon)
    reps = 2 if quick else 5
    for fn in fns.values():  # first-call allocations and kornia kernel caches
        fn()
    times = common.interleaved({k: _ms(fn, reps) for k, fn in fns.items()}, rounds)
    base_loss = common.median(times["loss L2"])
    base_map = common.median(times["map l2, Gaussian sigma 4"])
    rows = []
    for name, values in times.items():
        ms = common.median(values)
        base = base_loss if name.startswith("loss") else base_map
        rows.append([name, ms, ms / base])
    head = (
        f"Losses (forward + backward) and anomaly maps (illumination matching on, as configured) "
        f"on a batch {list(shape)}; median of {rounds} interleaved rounds of {reps} calls; "
        f"torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}"
    )
    headers = ["what", "ms per batch", "x L2 loss / x default map (l2, sigma 4)"]
    return head + "\n\n" + common.table(headers, rows)


def main(argv: list[str] | None = None) -> str:
    return common.simple_main(__doc__, run, argv, quick=2, full=5)


if __name__ == "__main__":
    main()
