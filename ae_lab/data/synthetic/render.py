"""Render one synthetic sample: pose, clean and defective drawing, ground-truth mask, camera."""

from __future__ import annotations

import numpy as np

from ae_lab.data.synthetic.draw import make_canvas
from ae_lab.data.synthetic.nuisances import photograph, pose
from ae_lab.data.synthetic.objects import Design

# A pixel belongs to the defect when the defect changed it by more than this (0..1 scale):
# well above antialiasing round-off, well below any defect's contrast.
MASK_THRESHOLD = 0.06
MAX_DEFECT_TRIES = 8


def _min_area(size: int) -> int:
    return max(3, round(size * size * 0.00025))


def render_sample(
    design: Design, size: int, key: list[int], defect: str | None, kinds: set[str]
) -> tuple[np.ndarray, np.ndarray | None]:
    """One image as [H, W, C] uint8 (C = 1 for grayscale designs) and, for a defect, its [H, W]
    bool mask. `key` seeds every random stream, so the same key gives the same bytes."""
    streams = [np.random.default_rng([*key, s]) for s in range(3)]
    pose_rng, defect_rng, camera_rng = streams
    shift, angle = pose(pose_rng, size, large="pose" in kinds)
    scale = float(pose_rng.uniform(0.98, 1.02))

    def draw(kind: str | None) -> np.ndarray:
        canvas = make_canvas(size, shift, angle, scale)
        # The look stream restarts for every render so clean and defective share everything else.
        design.draw(canvas, np.random.default_rng([*key, 9]), kind, defect_rng)
        return np.clip(canvas.img, 0, 1)

    img, mask = draw(None), None
    if defect is not None:
        clean, best = img, -1
        # Redraw a defect that came out too small (e.g. mostly off the part) with fresh parameters.
        for _ in range(MAX_DEFECT_TRIES):
            candidate = draw(defect)
            changed = np.abs(candidate - clean).max(-1) > MASK_THRESHOLD
            if changed.sum() > best:
                img, mask, best = candidate, changed, int(changed.sum())
            if best >= _min_area(size):
                break
        if best == 0:
            raise RuntimeError(f"{design.name}/{defect}: the defect changed no pixel at {size} px")
    if design.grayscale:
        img = img.mean(-1, keepdims=True)
    return photograph(img, camera_rng, illumination="illumination" in kinds), mask
