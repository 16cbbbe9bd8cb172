"""Reconstruction errors, one formula each: the training losses, and the anomaly maps and image
scores computed from the same per-pixel error maps. Images are [B,C,H,W] in [0, 1].

SSIM scale: `SSIMLoss` is 1 - mean(SSIM map), in [0, 2], 0 for identical images (the loss of
Zhao et al. 2017 and the `val/one_minus_ssim` convention). kornia's own `SSIMLoss` returns
(1 - SSIM) / 2 instead; we do not use it, so that the SSIM + L1 mix weights the two terms as in
the paper.
"""

import math
from dataclasses import dataclass

import kornia
import torch
from torch import Tensor, nn

from ae_lab.errors import AeLabError


class ReconstructionLoss(nn.Module):
    """`error_map(recon, target) -> [B,1,H,W]`; `per_image` its mean per image [B]; `forward`
    the mean over the batch (a scalar, what training minimises)."""

    def error_map(self, recon: Tensor, target: Tensor) -> Tensor:
        raise NotImplementedError

    def per_image(self, recon: Tensor, target: Tensor) -> Tensor:
        # A shape mismatch would broadcast and silently train on garbage.
        if recon.shape != target.shape:
            raise ValueError(f"recon {tuple(recon.shape)} and target {tuple(target.shape)} differ")
        return self.error_map(recon, target).mean(dim=(1, 2, 3))

    def forward(self, recon: Tensor, target: Tensor) -> Tensor:
        return self.per_image(recon, target).mean()


class L1Loss(ReconstructionLoss):
    """Mean absolute error over all pixels and channels."""

    def error_map(self, recon: Tensor, target: Tensor) -> Tensor:
        return (recon - target).abs().mean(dim=1, keepdim=True)


class L2Loss(ReconstructionLoss):
    """Mean squared error over all pixels and channels."""

    def error_map(self, recon: Tensor, target: Tensor) -> Tensor:
        return (recon - target).square().mean(dim=1, keepdim=True)


class SSIMLoss(ReconstructionLoss):
    """1 - mean SSIM (Gaussian window, sigma 1.5, reflect padding, data range 1), in [0, 2].

    Identical images give 0 up to kornia's 1e-12 stabiliser (about 1e-5 on flat black patches).
    Images must be larger than window_size // 2 on each side.
    """

    def __init__(self, window_size: int = 11) -> None:
        super().__init__()
        if type(window_size) is not int or window_size <= 0 or window_size % 2 == 0:
            raise AeLabError(
                f"loss.fn.window_size={window_size!r} must be an odd positive integer so that the "
                "SSIM window is centred on each pixel; set it in conf/loss/<loss>.yaml or on the "
                "command line, e.g. loss.fn.window_size=11 or 7."
            )
        self.window_size = window_size

    def error_map(self, recon: Tensor, target: Tensor) -> Tensor:
        ssim = kornia.metrics.ssim(recon, target, self.window_size, max_val=1.0)
        return 1.0 - ssim.mean(dim=1, keepdim=True)


class SSIML1Loss(ReconstructionLoss):
    """alpha * SSIMLoss + (1 - alpha) * L1Loss, the mix of Zhao et al. (alpha = 0.84).

    SSIM alone is insensitive to uniform brightness and colour shifts; the L1 term anchors them.
    """

    def __init__(self, window_size: int = 11, alpha: float = 0.84) -> None:
        super().__init__()
        if not 0.0 <= alpha <= 1.0:
            raise AeLabError(f"loss.fn.alpha={alpha} must be in [0, 1]; the paper uses 0.84.")
        self.alpha = alpha
        self.ssim = SSIMLoss(window_size)
        self.l1 = L1Loss()

    def error_map(self, recon: Tensor, target: Tensor) -> Tensor:
        ssim, l1 = self.ssim.error_map(recon, target), self.l1.error_map(recon, target)
        return self.alpha * ssim + (1 - self.alpha) * l1


@torch.no_grad()
def per_image_errors(x: Tensor, recon: Tensor, window_size: int = 11) -> dict[str, Tensor]:
    """Raw reconstruction errors per image, whatever the configured score: each [B].

    `l1` mean absolute error, `l2` mean squared error, `ssim` 1 - mean SSIM (no illumination
    matching, no smoothing), so analyses can compare the error kinds on equal terms.
    """
    x, recon = x.float(), recon.float()
    losses = {"l1": L1Loss(), "l2": L2Loss(), "ssim": SSIMLoss(window_size)}
    return {name: loss.per_image(recon, x) for name, loss in losses.items()}


# ---- anomaly maps and image scores (conf/scoring/*.yaml) -----------------------------------------
MAP_KINDS = ("l1", "l2", "ssim")
REDUCTIONS = ("mean", "max", "topk")


@dataclass
class ScoringConfig:
    """How a reconstruction becomes an anomaly map and an image score (`conf/scoring/*.yaml`)."""

    map: str = "l2"
    window_size: int = 11
    sigma: float = 2.0
    reduction: str = "topk"
    topk_percent: float = 0.5
    illumination_invariant: bool = True

    def __post_init__(self) -> None:
        odd = type(self.window_size) is int and self.window_size >= 3 and self.window_size % 2
        problems = {
            "map": (self.map in MAP_KINDS, f"the valid choices are {', '.join(MAP_KINDS)}"),
            "reduction": (
                self.reduction in REDUCTIONS,
                f"the valid choices are {', '.join(REDUCTIONS)}",
            ),
            "window_size": (odd, "the SSIM window must be an odd integer >= 3 (e.g. 7 or 11)"),
            "sigma": (self.sigma >= 0, "the map's Gaussian smoothing needs sigma >= 0 (0: none)"),
            "topk_percent": (
                0 < self.topk_percent <= 100,
                "the percentage of the highest pixels that reduction=topk averages, in (0, 100]",
            ),
        }
        for name, (ok, why) in problems.items():
            if not ok:
                raise AeLabError(
                    f"Invalid scoring.{name}={getattr(self, name)!r}: {why}. Fix it in "
                    f"conf/scoring/*.yaml or on the command line (scoring.{name}=...)."
                )


def match_illumination(x: Tensor, recon: Tensor, eps: float = 1e-6) -> Tensor:
    """Map the input x [B,C,H,W] onto recon's brightness and contrast, per image and channel.

    A global brightness/contrast change is a nuisance, not a defect. We fit x ~ a*recon + b by least
    squares and return (x - b) / a, so the remaining error is the fit residual in the
    reconstruction's units. Regression (not std matching) because an AE reconstruction is blurrier
    than its input: std matching would inflate its contrast and the error everywhere. Mapping x onto
    recon (not recon onto x) also undoes the gain on the detail the AE cannot reproduce, so x*1.2
    scores exactly like x (measured on blurred textures: l2 score ratio 1.00 vs 1.43 the other way).
    A local defect barely moves the per-image fit, so its residual survives. The gain is clamped to
    [0.5, 2] so a near-flat reconstruction cannot blow the input up or flatten it.
    """
    mu_x = x.mean(dim=(2, 3), keepdim=True)
    mu_r = recon.mean(dim=(2, 3), keepdim=True)
    xc, rc = x - mu_x, recon - mu_r
    cov = (xc * rc).mean(dim=(2, 3), keepdim=True)
    gain = (cov / (rc.square().mean(dim=(2, 3), keepdim=True) + eps)).clamp(0.5, 2.0)
    return xc / gain + mu_r


@torch.no_grad()
def anomaly_map(x: Tensor, recon: Tensor, cfg: ScoringConfig | None = None) -> Tensor:
    """Per-pixel anomaly map [B,1,H,W] (>= 0, higher = more anomalous); x, recon [B,C,H,W]."""
    cfg = cfg or ScoringConfig()
    x, recon = x.float(), recon.float()
    if cfg.illumination_invariant:
        x = match_illumination(x, recon)
    loss = {"l1": L1Loss(), "l2": L2Loss(), "ssim": SSIMLoss(cfg.window_size)}[cfg.map]
    # Rounding can push SSIM a hair above 1; an error map is >= 0.
    amap = loss.error_map(recon, x).clamp_min(0.0)
    # Truncate the Gaussian at 4 sigma (scipy's default), inside the image for reflect padding.
    ksize = min(2 * round(4 * cfg.sigma) + 1, 2 * (min(x.shape[-2:]) // 2) - 1)
    if cfg.sigma > 0 and ksize >= 3:
        amap = kornia.filters.gaussian_blur2d(amap, (ksize, ksize), (cfg.sigma, cfg.sigma))
    return amap


@torch.no_grad()
def image_score(amap: Tensor, cfg: ScoringConfig | None = None) -> Tensor:
    """Reduce anomaly maps [B,1,H,W] to image scores [B] (`cfg.reduction`: mean, max or topk)."""
    cfg = cfg or ScoringConfig()
    flat = amap.flatten(start_dim=1)
    if cfg.reduction == "mean":
        return flat.mean(dim=1)
    if cfg.reduction == "max":
        return flat.amax(dim=1)
    k = max(1, math.ceil(flat.shape[1] * cfg.topk_percent / 100))
    return flat.topk(k, dim=1).values.mean(dim=1)
