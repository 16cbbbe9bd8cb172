"""Reconstruction losses, one formula each; images are [B,C,H,W] in [0, 1].

SSIM scale: `SSIMLoss` is 1 - mean(SSIM map), in [0, 2], 0 for identical images (the loss of
Zhao et al. 2017 and the `val/one_minus_ssim` convention). kornia's own `SSIMLoss` returns
(1 - SSIM) / 2 instead; we do not use it, so that the SSIM + L1 mix weights the two terms as in
the paper.
"""

import kornia
import torch
from torch import Tensor, nn

from ae_lab.errors import SettingError, check_number


def check_window_size(owner: type, window_size: object) -> None:
    """The SSIM window must be centred on a pixel and span more than it: odd and >= 3."""
    ok = type(window_size) is int and window_size >= 3 and window_size % 2 == 1
    if not ok:
        raise SettingError(
            owner,
            "window_size",
            f"window_size={window_size!r} must be an odd integer >= 3 (e.g. 11)",
        )


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
        check_window_size(type(self), window_size)
        self.window_size = window_size

    def error_map(self, recon: Tensor, target: Tensor) -> Tensor:
        ssim = kornia.metrics.ssim(recon, target, self.window_size, max_val=1.0)
        return 1.0 - ssim.mean(dim=1, keepdim=True)


class SSIML1Loss(SSIMLoss):
    """alpha * SSIMLoss + (1 - alpha) * L1Loss, the mix of Zhao et al. (alpha = 0.84).

    SSIM alone is insensitive to uniform brightness and colour shifts; the L1 term anchors them.
    """

    def __init__(self, window_size: int = 11, alpha: float = 0.84) -> None:
        super().__init__(window_size)
        check_number(type(self), "alpha", alpha, 0.0, 1.0)
        self.alpha = alpha
        self.l1 = L1Loss()

    def error_map(self, recon: Tensor, target: Tensor) -> Tensor:
        ssim, l1 = super().error_map(recon, target), self.l1.error_map(recon, target)
        return self.alpha * ssim + (1 - self.alpha) * l1


def error_kind(name: str, window_size: int = 11) -> ReconstructionLoss:
    """The plain error called `name` (l1, l2 or ssim): the names of `val/...` and score columns."""
    kinds = {"l1": L1Loss, "l2": L2Loss, "ssim": lambda: SSIMLoss(window_size)}
    return kinds[name]()


ERROR_KINDS = ("l1", "l2", "ssim")


@torch.no_grad()
def per_image_errors(x: Tensor, recon: Tensor, window_size: int = 11) -> dict[str, Tensor]:
    """Raw reconstruction errors per image, whatever the configured score: each [B].

    `l1` mean absolute error, `l2` mean squared error, `ssim` 1 - mean SSIM (no illumination
    matching, no smoothing), so analyses can compare the error kinds on equal terms.
    """
    x, recon = x.float(), recon.float()
    return {name: error_kind(name, window_size).per_image(recon, x) for name in ERROR_KINDS}
