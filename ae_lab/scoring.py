"""How a reconstruction becomes an anomaly map and an image score (`conf/scoring/*.yaml`).
Images are [B,C,H,W] in [0, 1]."""

import math
from dataclasses import dataclass

import kornia
import torch
from torch import Tensor

from ae_lab.errors import SettingError, check_number
from ae_lab.losses import ERROR_KINDS, check_window_size, error_kind

REDUCTIONS = ("mean", "max", "topk")


@dataclass
class Scoring:
    """map: the per-pixel error (l1, l2, or ssim: 1 - local SSIM), averaged over channels;
    window_size: its SSIM window; sigma: Gaussian smoothing of the map (0: none); reduction: map
    -> score (mean, max, or topk: the mean of the highest `topk_percent` % of pixels);
    illumination_invariant: fit x ~ a*recon + b per image and channel first."""

    map: str = "l2"
    window_size: int = 11
    sigma: float = 2.0
    reduction: str = "topk"
    topk_percent: float = 0.5
    illumination_invariant: bool = True

    def __post_init__(self) -> None:
        for name, choices in (("map", ERROR_KINDS), ("reduction", REDUCTIONS)):
            if getattr(self, name) not in choices:
                raise SettingError(
                    Scoring,
                    name,
                    f"{name}={getattr(self, name)!r} is not one of {', '.join(choices)}",
                )
        check_window_size(Scoring, self.window_size)
        check_number(Scoring, "sigma", self.sigma, 0.0, 100.0)
        check_number(Scoring, "topk_percent", self.topk_percent, 0.0, 100.0, low_open=True)
        if not isinstance(self.illumination_invariant, bool):
            raise SettingError(
                Scoring, "illumination_invariant", "illumination_invariant must be true or false"
            )


def match_illumination(x: Tensor, recon: Tensor, eps: float = 1e-6) -> Tensor:
    """Map the input x [B,C,H,W] onto recon's brightness and contrast, per image and channel.

    A global brightness/contrast change is a nuisance, not a defect. We fit x ~ a*recon + b by least
    squares and return (x - b) / a, so the remaining error is the fit residual in the
    reconstruction's units. Regression (not std matching) because an AE reconstruction is blurrier
    than its input: std matching would inflate its contrast and the error everywhere. Mapping x onto
    recon (not recon onto x) also undoes the gain on the detail the AE cannot reproduce, so x*1.2
    scores like x. A local defect barely moves the per-image fit, so its residual survives. The
    gain is clamped to [0.5, 2] so a near-flat reconstruction cannot blow the input up or flatten
    it.
    """
    mu_x = x.mean(dim=(2, 3), keepdim=True)
    mu_r = recon.mean(dim=(2, 3), keepdim=True)
    xc, rc = x - mu_x, recon - mu_r
    cov = (xc * rc).mean(dim=(2, 3), keepdim=True)
    gain = (cov / (rc.square().mean(dim=(2, 3), keepdim=True) + eps)).clamp(0.5, 2.0)
    return xc / gain + mu_r


@torch.no_grad()
def anomaly_map(x: Tensor, recon: Tensor, scoring: Scoring | None = None) -> Tensor:
    """Per-pixel anomaly map [B,1,H,W] (>= 0, higher = more anomalous); x, recon [B,C,H,W]."""
    scoring = scoring or Scoring()
    x, recon = x.float(), recon.float()
    if scoring.illumination_invariant:
        x = match_illumination(x, recon)
    # Rounding can push SSIM a hair above 1; an error map is >= 0.
    amap = error_kind(scoring.map, scoring.window_size).error_map(recon, x).clamp_min(0.0)
    # Truncate the Gaussian at 4 sigma (scipy's default), inside the image for reflect padding.
    ksize = min(2 * round(4 * scoring.sigma) + 1, 2 * (min(x.shape[-2:]) // 2) - 1)
    if scoring.sigma > 0 and ksize >= 3:
        amap = kornia.filters.gaussian_blur2d(amap, (ksize, ksize), (scoring.sigma,) * 2)
    return amap


@torch.no_grad()
def image_score(amap: Tensor, scoring: Scoring | None = None) -> Tensor:
    """Reduce anomaly maps [B,1,H,W] to image scores [B] (`scoring.reduction`)."""
    scoring = scoring or Scoring()
    flat = amap.flatten(start_dim=1)
    if scoring.reduction == "mean":
        return flat.mean(dim=1)
    if scoring.reduction == "max":
        return flat.amax(dim=1)
    k = max(1, math.ceil(flat.shape[1] * scoring.topk_percent / 100))
    return flat.topk(k, dim=1).values.mean(dim=1)
