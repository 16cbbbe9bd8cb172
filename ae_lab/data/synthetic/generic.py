"""Defect painters shared by all categories, and procedural objects for unknown category names.

A defect painter draws one localised defect inside `region` (an SDF). The ground-truth mask is not
computed here: the generator diffs the defective render against the clean one.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from ae_lab.data.synthetic.draw import (
    Canvas,
    Sdf,
    box,
    circle,
    ellipse,
    intersect,
    polyline,
    segment,
    subtract,
    union,
)
from ae_lab.data.synthetic.draw import sample_inside as _inside

GENERIC_DEFECTS = ("color", "contamination", "crack", "hole", "scratch")
_TINTS = ((0.85, 0.2, 0.15), (0.2, 0.65, 0.25), (0.2, 0.3, 0.85), (0.9, 0.8, 0.1))
_DIRT = ((0.35, 0.22, 0.1), (0.93, 0.91, 0.86), (0.05, 0.05, 0.05))


def _blob(rng, px: float, py: float, n: int, spread: float, r_lo: float, r_hi: float) -> Sdf:
    """An irregular blob: n circles scattered around (px, py)."""
    offsets, radii = rng.uniform(-spread, spread, (n, 2)), rng.uniform(r_lo, r_hi, n)
    return union(*(circle(px + o[0], py + o[1], r) for o, r in zip(offsets, radii, strict=True)))


def _scratch_color(u, v, img: np.ndarray) -> np.ndarray:
    # Scratches catch the light: bright on dark surfaces, dark grooves on bright ones.
    light = img.mean(-1, keepdims=True) > 0.6
    return np.where(light, img * 0.45, img * 0.4 + 0.58)


def _crack_color(u, v, img: np.ndarray) -> np.ndarray:
    # A crack is a dark gap, except on dark parts where its broken edges show lighter material.
    dark = img.mean(-1, keepdims=True) < 0.3
    return np.where(dark, img * 0.3 + 0.45, np.float32(0.07))


def paint_defect(c: Canvas, kind: str, rng: np.random.Generator, region: Sdf, size: float = 1.0):
    """Paint defect `kind` (one of GENERIC_DEFECTS) somewhere inside `region`; `size` scales it."""
    px, py = _inside(rng, region, margin=0.03 * size)
    if kind == "scratch":
        a, half = rng.uniform(0, np.pi), rng.uniform(0.1, 0.22) * size
        dx, dy = half * np.cos(a), half * np.sin(a)
        width = max(rng.uniform(0.009, 0.014), 0.6 * c.px)  # ~2.5-3.5 px at 256 px
        line = segment(px - dx, py - dy, px + dx, py + dy, width)
        c.fill(intersect(line, region), _scratch_color, 0.9)
    elif kind == "crack":
        pts, a = [(px, py)], rng.uniform(0, 2 * np.pi)
        for _ in range(int(rng.integers(5, 9))):
            a += rng.uniform(-0.7, 0.7)
            step = rng.uniform(0.04, 0.07) * size
            pts.append((pts[-1][0] + step * np.cos(a), pts[-1][1] + step * np.sin(a)))
        width = max(rng.uniform(0.008, 0.012), 0.6 * c.px)  # ~2-3 px at 256 px
        c.fill(intersect(polyline(pts, width), region), _crack_color, 0.9)
    elif kind == "hole":
        r = rng.uniform(0.045, 0.075) * size
        ox, oy = rng.uniform(-0.5, 0.5, 2) * r
        shape = union(circle(px, py, r), circle(px + ox, py + oy, r * 0.7))
        c.fill(intersect(shape, region), (0.04, 0.04, 0.04))
    elif kind == "color":
        tint = np.asarray(_TINTS[int(rng.integers(len(_TINTS)))], np.float32)
        blob = _blob(rng, px, py, 3, 0.06, 0.05 * size, 0.1 * size)
        c.fill(intersect(blob, region), lambda u, v, img: img * 0.4 + tint * 0.6)
    elif kind == "contamination":
        dirt = _DIRT[int(rng.integers(len(_DIRT)))]
        blob = _blob(rng, px, py, 5, 0.07, 0.02 * size, 0.05 * size)
        c.fill(intersect(blob, region), dirt, rng.uniform(0.85, 1.0))
    else:
        raise ValueError(f"unknown generic defect {kind!r}")


@dataclass(frozen=True)
class GenericLook:
    """A procedural object fixed by the category name (not by the seed)."""

    shape: str
    size: tuple[float, float]
    background: tuple[float, float, float]
    body: tuple[float, float, float]
    accent: tuple[float, float, float]
    pattern: str
    defects: tuple[str, ...]


def generic_look(name: str) -> GenericLook:
    r = np.random.default_rng(zlib.crc32(name.encode()))
    background = r.uniform(0.05, 0.9) * r.uniform(0.85, 1.0, 3)
    body = r.uniform(0.1, 0.95, 3)
    # Keep the object distinguishable from the background in luminance.
    if abs(body.mean() - background.mean()) < 0.3:
        body = np.clip(1.0 - background + r.uniform(-0.1, 0.1, 3), 0.05, 0.95)
    n_defects = int(r.integers(2, 5))
    return GenericLook(
        shape=str(r.choice(["disk", "box", "capsule", "ring"])),
        size=(float(r.uniform(0.5, 0.75)), float(r.uniform(0.35, 0.7))),
        background=tuple(float(x) for x in background),
        body=tuple(float(x) for x in body),
        accent=tuple(float(x) for x in r.uniform(0.05, 0.95, 3)),
        pattern=str(r.choice(["stripes", "dots", "ring", "cross"])),
        defects=tuple(sorted(r.choice(GENERIC_DEFECTS, n_defects, replace=False).tolist())),
    )


def _outline(look: GenericLook) -> Sdf:
    a, b = look.size
    if look.shape == "disk":
        return ellipse(0, 0, a, b)
    if look.shape == "box":
        return box(0, 0, a, b, r=0.08)
    if look.shape == "capsule":
        return segment(-a + b / 2, 0, a - b / 2, 0, b / 2)
    return subtract(circle(0, 0, a), circle(0, 0, a * 0.45))


def draw_generic(c: Canvas, rng, defect: str | None, drng, *, look: GenericLook) -> None:
    c.background(look.background, 0.15)
    outline = _outline(look)
    body = np.asarray(look.body, np.float32) * rng.uniform(0.97, 1.03, 3).astype(np.float32)
    c.fill(
        outline, lambda u, v, img: np.clip(body * (1.05 - 0.15 * (u**2 + v**2))[..., None], 0, 1)
    )
    a, b = look.size
    if look.pattern == "stripes":
        marks = union(*(box(x, 0, 0.025, b, 0) for x in np.linspace(-a * 0.6, a * 0.6, 4)))
    elif look.pattern == "dots":
        marks = union(*(circle(x, y, 0.05) for x in (-a / 3, a / 3) for y in (-b / 3, b / 3)))
    elif look.pattern == "ring":
        ring_r = min(a, b) * 0.55

        marks = subtract(circle(0, 0, ring_r + 0.025), circle(0, 0, ring_r - 0.025))
    else:
        marks = union(box(0, 0, a * 0.5, 0.025), box(0, 0, 0.025, b * 0.5))
    c.fill(intersect(marks, outline), look.accent, 0.9)
    if defect is not None:
        paint_defect(c, defect, drng, outline)
