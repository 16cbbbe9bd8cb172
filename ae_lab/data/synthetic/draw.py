"""Vectorised 2-D drawing with signed distance functions (SDFs) on a float image.

Coordinates are normalised: the image spans [-1, 1] on both axes, `v` points down. A shape is a
callable `sdf(u, v) -> distance` (negative inside) that works on scalars and arrays alike, so the
same closure draws the shape and answers "is this point inside?" when placing defects. Every shape
carries a bounding box `.bbox` = (u0, v0, u1, v1) in its own frame, so drawing one only touches
the pixels around it; that keeps a 256 px image at a few milliseconds.
"""

from collections.abc import Callable
from functools import cache, reduce
from itertools import pairwise

import numpy as np

Sdf = Callable[[np.ndarray, np.ndarray], np.ndarray]


def shape(fn: Callable, bbox: tuple[float, float, float, float]) -> Sdf:
    """`fn` as a shape with bounding box `bbox`."""
    fn.bbox = bbox
    return fn


def circle(cx: float, cy: float, r: float) -> Sdf:
    return shape(lambda u, v: np.hypot(u - cx, v - cy) - r, (cx - r, cy - r, cx + r, cy + r))


def box(cx: float, cy: float, hw: float, hh: float, r: float = 0.0) -> Sdf:
    """Axis-aligned box of half sizes (hw, hh) with corner radius r."""

    def sdf(u, v):
        qx = np.abs(u - cx) - hw + r
        qy = np.abs(v - cy) - hh + r
        outside = np.hypot(np.maximum(qx, 0.0), np.maximum(qy, 0.0))
        return outside + np.minimum(np.maximum(qx, qy), 0.0) - r

    return shape(sdf, (cx - hw, cy - hh, cx + hw, cy + hh))


def segment(ax: float, ay: float, bx: float, by: float, r: float) -> Sdf:
    """Capsule around the segment a-b with radius r (a stroke of width 2r)."""
    dx, dy = bx - ax, by - ay
    len2 = max(dx * dx + dy * dy, 1e-12)

    def sdf(u, v):
        t = np.clip(((u - ax) * dx + (v - ay) * dy) / len2, 0.0, 1.0)
        return np.hypot(u - ax - t * dx, v - ay - t * dy) - r

    return shape(sdf, (min(ax, bx) - r, min(ay, by) - r, max(ax, bx) + r, max(ay, by) + r))


def polyline(points: list[tuple[float, float]], r: float) -> Sdf:
    return union(*(segment(*a, *b, r) for a, b in pairwise(points)))


def union(*sdfs: Sdf) -> Sdf:
    sdf = lambda u, v: reduce(np.minimum, (s(u, v) for s in sdfs))  # noqa: E731
    boxes = [s.bbox for s in sdfs]
    lo, hi = np.min(boxes, 0), np.max(boxes, 0)
    return shape(sdf, (lo[0], lo[1], hi[2], hi[3]))


def intersect(a: Sdf, b: Sdf) -> Sdf:
    ba, bb = a.bbox, b.bbox
    bbox = (max(ba[0], bb[0]), max(ba[1], bb[1]), min(ba[2], bb[2]), min(ba[3], bb[3]))
    return shape(lambda u, v: np.maximum(a(u, v), b(u, v)), bbox)


def subtract(a: Sdf, b: Sdf) -> Sdf:
    return shape(lambda u, v: np.maximum(a(u, v), -b(u, v)), a.bbox)


@cache
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    t = (np.arange(size, dtype=np.float32) + 0.5) / size * 2.0 - 1.0
    return np.meshgrid(t, t)


class Canvas:
    """An [H, W, 3] float image in [0, 1] and the frame to draw in.

    The object is shifted by `shift` (normalised units), rotated by `angle` radians and scaled by
    `scale`. `u, v`: object frame (the part under inspection); `x, y`: camera frame (lighting).
    `px` is one pixel in object units.
    """

    def __init__(self, size: int, shift: tuple[float, float], angle: float, scale: float) -> None:
        self.size, self.px = size, 2.0 / size / scale
        self.x, self.y = _grid(size)
        self.img = np.zeros((size, size, 3), np.float32)
        self.to_image = np.eye(3)  # maps object coordinates (u, v, 1) to image ones (x, y, 1)
        self.move(shift, angle, scale)

    def move(self, shift: tuple[float, float], angle: float, scale: float = 1.0) -> None:
        """Move the object frame (by the pose, then e.g. for a misplaced part or a rotated cut)."""
        c, s = scale * np.cos(angle), scale * np.sin(angle)
        self.to_image = self.to_image @ np.array([[c, -s, shift[0]], [s, c, shift[1]], [0, 0, 1]])
        m = np.linalg.inv(self.to_image).astype(np.float32)
        self.u = m[0, 0] * self.x + m[0, 1] * self.y + m[0, 2]
        self.v = m[1, 0] * self.x + m[1, 1] * self.y + m[1, 2]

    def background(self, color, strength: float = 0.12) -> None:
        """Fill with `color`, darker towards the corners like a real lens (`strength` at r=1)."""
        falloff = 1 - np.float32(strength) * (self.x**2 + self.y**2)
        self.img[:] = np.asarray(color, np.float32) * falloff[..., None]

    def fill(self, sdf: Sdf, color, opacity: float = 1.0) -> None:
        """Blend `color` over the inside of `sdf` with a 1-px antialiased edge. `color` is an RGB
        triple or a function `(u, v, img) -> [h, w, 1 or 3]` of the window's coordinates/pixels."""
        b = sdf.bbox  # only the pixel rows/cols that can be inside `sdf`
        pts = self.to_image @ np.array(
            [[b[0], b[2], b[0], b[2]], [b[1], b[1], b[3], b[3]], [1, 1, 1, 1]]
        )
        lo = np.floor((pts[:2].min(1) + 1) / 2 * self.size - 2).astype(int).clip(0, self.size)
        hi = np.ceil((pts[:2].max(1) + 1) / 2 * self.size + 3).astype(int).clip(0, self.size)
        if (hi <= lo).any():
            return
        win = slice(lo[1], hi[1]), slice(lo[0], hi[0])
        u, v = self.u[win], self.v[win]
        alpha = np.clip(0.5 - sdf(u, v) / self.px, 0.0, 1.0).astype(np.float32)
        alpha *= np.float32(opacity)
        img = self.img[win]
        col = color(u, v, img) if callable(color) else np.asarray(color, np.float32)
        img += alpha[..., None] * (col - img)
