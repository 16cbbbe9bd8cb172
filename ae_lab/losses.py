"""Reconstruction losses: `forward(recon, target) -> scalar`, images [B, C, H, W] in [0, 1].

SSIM scale: `SSIMLoss` is 1 - mean(SSIM map), in [0, 2], 0 for identical images (the loss of
Zhao et al. 2017 and the `val/one_minus_ssim` convention). kornia's own `SSIMLoss` returns (1 - SSIM) / 2
instead; we do not use it, so that the SSIM + L1 mix weights the two terms as in the paper.
"""

import torch.nn.functional as F
from kornia.metrics import ssim
from torch import Tensor, nn

from ae_lab.errors import AeLabError


def _check_pair(recon: Tensor, target: Tensor) -> None:
    # F.l1_loss only warns on a shape mismatch and then broadcasts, silently training on garbage.
    if recon.shape != target.shape:
        raise ValueError(f"recon {tuple(recon.shape)} and target {tuple(target.shape)} differ")


class L1Loss(nn.Module):
    """Mean absolute error over all pixels and channels."""

    def forward(self, recon: Tensor, target: Tensor) -> Tensor:
        _check_pair(recon, target)
        return F.l1_loss(recon, target)


class L2Loss(nn.Module):
    """Mean squared error over all pixels and channels."""

    def forward(self, recon: Tensor, target: Tensor) -> Tensor:
        _check_pair(recon, target)
        return F.mse_loss(recon, target)


class SSIMLoss(nn.Module):
    """1 - mean SSIM (Gaussian window, sigma 1.5, reflect padding, data range 1), in [0, 2].

    Identical images give 0 up to kornia's 1e-12 stabiliser (about 1e-5 on flat black patches).
    Images must be larger than window_size // 2 on each side.
    """

    def __init__(self, window_size: int = 11) -> None:
        super().__init__()
        if isinstance(window_size, bool) or not isinstance(window_size, int):
            raise AeLabError(
                f"loss.fn.window_size must be an odd positive integer, got {window_size!r}; "
                "set it in conf/loss/<loss>.yaml, e.g. loss.fn.window_size=11."
            )
        if window_size <= 0 or window_size % 2 == 0:
            raise AeLabError(
                f"loss.fn.window_size={window_size} must be odd and positive so that the SSIM "
                "window is centred on each pixel; use e.g. loss.fn.window_size=11 or 7."
            )
        self.window_size = window_size

    def forward(self, recon: Tensor, target: Tensor) -> Tensor:
        _check_pair(recon, target)
        return 1.0 - ssim(recon, target, self.window_size, max_val=1.0).mean()


class SSIML1Loss(nn.Module):
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

    def forward(self, recon: Tensor, target: Tensor) -> Tensor:
        return self.alpha * self.ssim(recon, target) + (1 - self.alpha) * self.l1(recon, target)
