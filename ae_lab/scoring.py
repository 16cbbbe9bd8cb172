"""Anomaly maps and image scores from an input and its reconstruction (pure functions, no grad)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import kornia
import torch
from torch import Tensor

from ae_lab.errors import AeLabError

MAP_KINDS = ("l1", "l2", "ssim")
REDUCTIONS = ("mean", "max", "topk")
# Images per chunk: SSIM keeps ~10 full-size intermediates alive, so chunking bounds peak memory.
_CHUNK = 64


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
        _check_choice("scoring.map", self.map, MAP_KINDS)
        _check_choice("scoring.reduction", self.reduction, REDUCTIONS)
        if (
            not isinstance(self.window_size, int)
            or self.window_size < 3
            or self.window_size % 2 == 0
        ):
            raise AeLabError(
                f"Invalid scoring.window_size={self.window_size!r}: the SSIM window must be an odd "
                "integer >= 3 (e.g. 7 or 11). Fix it in conf/scoring/*.yaml or with scoring.window_size=11."
            )
        if not self.sigma >= 0:
            raise AeLabError(
                f"Invalid scoring.sigma={self.sigma!r}: the Gaussian smoothing of the anomaly map "
                "needs sigma >= 0 (0 disables it). Fix it with e.g. scoring.sigma=4."
            )
        if not 0 < self.topk_percent <= 100:
            raise AeLabError(
                f"Invalid scoring.topk_percent={self.topk_percent!r}: it is the percentage of the "
                "highest-scoring pixels averaged by reduction=topk and must lie in (0, 100]."
            )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> ScoringConfig:
        """Build from a plain dict or DictConfig; unknown keys raise `AeLabError` with the valid ones."""
        d = dict(d or {})
        fields = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(d) - set(fields))
        if unknown:
            raise AeLabError(
                f"Unknown scoring setting(s) {', '.join('scoring.' + k for k in unknown)}: the valid "
                f"settings are {', '.join(fields)}. Fix conf/scoring/*.yaml or the command-line override."
            )
        return cls(**d)


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise AeLabError(
            f"Unknown {name}={value!r}: the valid choices are {', '.join(choices)}. "
            f"Fix it in conf/scoring/*.yaml or override it, e.g. {name}={choices[0]}."
        )


def _resolve(cfg: ScoringConfig | None, overrides: dict[str, Any]) -> ScoringConfig:
    # `kind` is the name the shared contract uses for the map type.
    if "kind" in overrides:
        overrides["map"] = overrides.pop("kind")
    return ScoringConfig.from_dict({**dataclasses.asdict(cfg or ScoringConfig()), **overrides})


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


def _raw_map(x: Tensor, recon: Tensor, kind: str, window_size: int) -> Tensor:
    if kind == "l1":
        return (x - recon).abs().mean(dim=1, keepdim=True)
    if kind == "l2":
        return (x - recon).square().mean(dim=1, keepdim=True)
    ssim = kornia.metrics.ssim(x, recon, window_size)
    # Rounding can push SSIM a hair above 1; an error map is >= 0.
    return (1.0 - ssim).clamp_min(0.0).mean(dim=1, keepdim=True)


@torch.no_grad()
def anomaly_map(
    x: Tensor, recon: Tensor, cfg: ScoringConfig | None = None, **overrides: Any
) -> Tensor:
    """Per-pixel anomaly map [B,1,H,W] (>= 0 up to rounding, higher = more anomalous).

    x, recon: [B,C,H,W] in [0,1]. `overrides` replace fields of `cfg` (e.g. `kind="l2"`, `sigma=0`).
    """
    cfg = _resolve(cfg, overrides)
    if x.shape != recon.shape or x.ndim != 4:
        raise ValueError(
            f"anomaly_map needs x and recon of equal shape [B,C,H,W], got {tuple(x.shape)} and {tuple(recon.shape)}"
        )
    x, recon = x.float(), recon.float()
    # Truncate the Gaussian at 4 sigma (scipy's default) and keep it inside the image for reflect padding.
    ksize = min(2 * round(4 * cfg.sigma) + 1, 2 * (min(x.shape[-2:]) // 2) - 1)
    out = []
    for xb, rb in zip(x.split(_CHUNK), recon.split(_CHUNK), strict=True):
        if cfg.illumination_invariant:
            xb = match_illumination(xb, rb)
        amap = _raw_map(xb, rb, cfg.map, cfg.window_size)
        if cfg.sigma > 0 and ksize >= 3:
            amap = kornia.filters.gaussian_blur2d(amap, (ksize, ksize), (cfg.sigma, cfg.sigma))
        out.append(amap)
    return torch.cat(out)


@torch.no_grad()
def image_score(amap: Tensor, cfg: ScoringConfig | None = None, **overrides: Any) -> Tensor:
    """Reduce anomaly maps [B,1,H,W] to image scores [B] (`reduction="mean" | "max" | "topk"`)."""
    cfg = _resolve(cfg, overrides)
    flat = amap.flatten(start_dim=1)
    if cfg.reduction == "mean":
        return flat.mean(dim=1)
    if cfg.reduction == "max":
        return flat.amax(dim=1)
    k = max(1, math.ceil(flat.shape[1] * cfg.topk_percent / 100))
    return flat.topk(k, dim=1).values.mean(dim=1)


@torch.no_grad()
def per_image_errors(x: Tensor, recon: Tensor, window_size: int = 11) -> dict[str, Tensor]:
    """Raw reconstruction errors per image, whatever the configured score: each [B].

    `l1` mean absolute error, `l2` mean squared error, `ssim` 1 - mean SSIM (no illumination
    matching, no smoothing), so analyses can compare the error kinds on equal terms.
    """
    x, recon = x.float(), recon.float()
    out: dict[str, list[Tensor]] = {"l1": [], "l2": [], "ssim": []}
    for xb, rb in zip(x.split(_CHUNK), recon.split(_CHUNK), strict=True):
        diff = xb - rb
        out["l1"].append(diff.abs().mean(dim=(1, 2, 3)))
        out["l2"].append(diff.square().mean(dim=(1, 2, 3)))
        out["ssim"].append(1.0 - kornia.metrics.ssim(xb, rb, window_size).mean(dim=(1, 2, 3)))
    return {k: torch.cat(v) for k, v in out.items()}
