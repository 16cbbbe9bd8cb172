"""Pose normalisation for objects that lie at any angle (MVTec's screw): rotate and centre each
image so that every object is shown the same way before the autoencoder sees it.

Why: an autoencoder must otherwise spend its bottleneck on the angle and position of the object
(360 degrees of screw), which blurs every reconstruction; and an object that is merely turned or
shifted is not a defect. The pose comes from image moments of the foreground (pixels that differ
from the background, a plane fitted to the image): the centroid, the main axis of the second
moments, and which end holds more of the object (a screw's head, which goes up). Pure tensor
code, one batched `warp_affine`, so aligning a whole split costs well under a second at 128 px.
"""

from __future__ import annotations

import torch
from kornia.geometry.transform import get_rotation_matrix2d, warp_affine
from torch import Tensor

# Foreground = pixels at least this far (0-1 grey) from the background: above sensor noise and
# the slow shading of MVTec's backgrounds, below the contrast of a metal part on its plate.
FOREGROUND_MARGIN = 0.08


def pose_matrices(images: Tensor, any_angle: bool = True) -> Tensor:
    """Affine matrices [N,2,3] that put each image's object upright (or straight) and centred.

    images: [N,C,H,W] in [0,1]. `any_angle=True` (objects that lie at any angle, MVTec's screw):
    the main axis becomes vertical with the heavier end at the top. `any_angle=False` (objects
    photographed in one pose with a little jitter): the smallest turn that makes the main axis
    vertical or horizontal, never a flip, so the object keeps its usual orientation. Either way
    the centroid moves to the image centre. An image without foreground gets identity.
    """
    n, _, h, w = images.shape
    grey = images.float().mean(dim=1, keepdim=True)  # [N,1,H,W]
    yy, xx = torch.meshgrid(
        torch.arange(h, dtype=grey.dtype), torch.arange(w, dtype=grey.dtype), indexing="ij"
    )
    # Background = a plane fitted to the whole image (the object covers a small part): a light
    # gradient across the plate must not pull the moments towards the bright side.
    basis = torch.stack([torch.ones_like(yy), yy / h - 0.5, xx / w - 0.5]).flatten(1)  # [3,HW]
    coef = torch.linalg.solve(basis @ basis.T, basis @ grey.flatten(1).T)  # [3,N]
    residual = grey - (coef.T @ basis).view(n, 1, h, w)
    residual = residual - residual.flatten(1).median(dim=1).values.view(n, 1, 1, 1)
    weight = (residual.abs() - FOREGROUND_MARGIN).clamp_min(0.0)
    mass = weight.sum(dim=(1, 2, 3))
    weight = weight / mass.clamp_min(1e-8).view(n, 1, 1, 1)
    cy, cx = (weight * yy).sum(dim=(1, 2, 3)), (weight * xx).sum(dim=(1, 2, 3))
    dy, dx = yy - cy.view(n, 1, 1, 1), xx - cx.view(n, 1, 1, 1)
    syy = (weight * dy * dy).sum(dim=(1, 2, 3))
    sxx = (weight * dx * dx).sum(dim=(1, 2, 3))
    sxy = (weight * dy * dx).sum(dim=(1, 2, 3))
    theta = 0.5 * torch.atan2(2 * sxy, syy - sxx)  # main axis, radians from +y (image down)
    # Rotating by -theta (kornia: degrees, counter-clockwise) turns the axis to -y.
    if any_angle:
        # The head is the end with more object in its last tenth of the length: a screw's head
        # is wide, its tip a point (the third moment would follow the dark thread instead). Only
        # the object's core counts: faint pixels of a textured plate past the tip or the head
        # would move the ends and turn the screw upside down.
        along = dy * torch.cos(theta).view(n, 1, 1, 1) + dx * torch.sin(theta).view(n, 1, 1, 1)
        inside = weight > 0.3 * weight.amax(dim=(1, 2, 3), keepdim=True)
        top = along.masked_fill(~inside, -torch.inf).amax(dim=(1, 2, 3), keepdim=True)
        low = along.masked_fill(~inside, torch.inf).amin(dim=(1, 2, 3), keepdim=True)
        end = 0.1 * (top - low)
        heavier_low = (inside & (along < low + end)).sum(dim=(1, 2, 3)) > (
            inside & (along > top - end)
        ).sum(dim=(1, 2, 3))
        angle = torch.rad2deg(-theta) + torch.where(heavier_low, 0.0, 180.0)  # head up
    else:
        # The heavier end is a weak cue on a squat object (a transistor's dark body outweighs its
        # light leads, and the sign flips from image to image); a tilt needs no flip.
        angle = torch.remainder(torch.rad2deg(-theta) + 45.0, 90.0) - 45.0
    centre = torch.stack([cx, cy], dim=1)
    matrix = get_rotation_matrix2d(centre, angle, torch.ones(n, 2))
    matrix[:, 0, 2] += (w - 1) / 2 - cx
    matrix[:, 1, 2] += (h - 1) / 2 - cy
    matrix[mass <= 1e-8] = torch.eye(2, 3)
    return matrix


def warp(images: Tensor, matrices: Tensor, mode: str = "bilinear") -> Tensor:
    """Apply `pose_matrices` to images [N,C,H,W] (float); `mode="nearest"` for masks.

    Uncovered corners repeat the border (a plain background), never mirrored object parts.
    """
    h, w = images.shape[-2:]
    return warp_affine(images, matrices, (h, w), mode=mode, padding_mode="border")


def align_uint8(
    images: Tensor, masks: Tensor, chunk: int = 256, any_angle: bool = True
) -> tuple[Tensor, Tensor]:
    """Pose-normalise uint8 images [N,C,H,W] and their bool masks [N,H,W] with the same warp."""
    out_img, out_mask = [], []
    for img, msk in zip(images.split(chunk), masks.split(chunk), strict=True):
        x = img.float() / 255.0
        m = pose_matrices(x, any_angle)
        out_img.append((warp(x, m) * 255.0).round().clamp(0, 255).to(torch.uint8))
        out_mask.append(warp(msk[:, None].float(), m, mode="nearest")[:, 0] > 0.5)
    return torch.cat(out_img), torch.cat(out_mask)
