"""What each category looks like: hand-made looks for the default categories (loosely after MVTec
AD), one plain procedural object for any other name, the defect painter they share, the registry.

Each painter `draw(c, rng, defect, drng)` paints one image on canvas `c`: `rng` draws the per-image
look (it is re-seeded identically for the clean and the defective render), `drng` draws the
defect. A defect painter draws one localised defect inside `region` (an SDF); the ground-truth mask
is not computed here: the generator diffs the defective render against the clean one.
"""

import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ae_lab.data.synthetic.draw import (
    Canvas,
    Sdf,
    box,
    circle,
    intersect,
    polyline,
    segment,
    shape,
    subtract,
    union,
)

F32 = np.float32


@dataclass(frozen=True)
class Design:
    """How a category looks: its defect types, whether images are grayscale, and its painter."""

    name: str
    defects: tuple[str, ...]
    grayscale: bool
    draw: Callable[..., None]


GENERIC_DEFECTS = ("crack", "hole", "scratch")


def _scratch_color(u, v, img: np.ndarray) -> np.ndarray:
    # Scratches catch the light: bright on dark surfaces, dark grooves on bright ones.
    light = img.mean(-1, keepdims=True) > 0.6
    return np.where(light, img * 0.45, img * 0.4 + 0.58)


def _crack_color(u, v, img: np.ndarray) -> np.ndarray:
    # A crack is a dark gap, except on dark parts where its broken edges show lighter material.
    dark = img.mean(-1, keepdims=True) < 0.3
    return np.where(dark, img * 0.3 + 0.45, np.float32(0.07))


def paint_defect(c: Canvas, kind: str, rng: np.random.Generator, region: Sdf) -> None:
    """Paint defect `kind` (one of GENERIC_DEFECTS) somewhere inside `region`."""
    b = region.bbox  # at a random point at least 0.03 inside `region`, else the deepest one
    pts = rng.uniform(b[:2], b[2:], size=(200, 2))
    d = region(pts[:, 0], pts[:, 1])
    ok = np.flatnonzero(d < -0.03)
    px, py = pts[ok[0] if ok.size else np.argmin(d)]
    if kind == "scratch":
        a, half = rng.uniform(0, np.pi), rng.uniform(0.1, 0.22)
        dx, dy = half * np.cos(a), half * np.sin(a)
        width = max(rng.uniform(0.009, 0.014), 0.6 * c.px)  # ~2.5-3.5 px at 256 px
        line = segment(px - dx, py - dy, px + dx, py + dy, width)
        c.fill(intersect(line, region), _scratch_color, 0.9)
    elif kind == "crack":
        pts, a = [(px, py)], rng.uniform(0, 2 * np.pi)
        for _ in range(int(rng.integers(5, 9))):
            a += rng.uniform(-0.7, 0.7)
            step = rng.uniform(0.04, 0.07)
            pts.append((pts[-1][0] + step * np.cos(a), pts[-1][1] + step * np.sin(a)))
        width = max(rng.uniform(0.008, 0.012), 0.6 * c.px)  # ~2-3 px at 256 px
        c.fill(intersect(polyline(pts, width), region), _crack_color, 0.9)
    elif kind == "hole":
        r = rng.uniform(0.045, 0.075)
        ox, oy = rng.uniform(-0.5, 0.5, 2) * r
        hole = union(circle(px, py, r), circle(px + ox, py + oy, r * 0.7))
        c.fill(intersect(hole, region), (0.04, 0.04, 0.04))


def draw_cable(c: Canvas, rng, defect: str | None, drng) -> None:
    """Cross-section: three coloured wires with copper cores in a round grey sheath."""
    c.background((0.1, 0.1, 0.1))
    R = 0.8 * rng.uniform(0.99, 1.01)
    c.fill(circle(0, 0, R), (0.42, 0.42, 0.4))
    c.fill(circle(0, 0, R - 0.035), lambda u, v, img: 0.74 * (1 - 0.08 * (u**2 + v**2))[..., None])
    colors = [(0.45, 0.62, 0.22), (0.2, 0.33, 0.72), (0.5, 0.3, 0.16)]
    colors = [np.asarray(k, F32) * rng.uniform(0.96, 1.04, 3).astype(F32) for k in colors]
    k = int(drng.integers(3)) if defect else -1
    if defect == "cable_swap":
        colors[k] = colors[(k + int(drng.integers(1, 3))) % 3]
    copper = np.asarray((0.8, 0.52, 0.28), F32)
    rings = []
    for i in range(3):
        a = -np.pi / 2 + i * 2 * np.pi / 3
        cx, cy = 0.37 * np.cos(a), 0.37 * np.sin(a)
        rings.append(subtract(circle(cx, cy, 0.29), circle(cx, cy, 0.17)))
        c.fill(circle(cx, cy, 0.29), colors[i] * F32(0.8))
        c.fill(circle(cx, cy, 0.27), colors[i])

        def strands(u, v, img, cx=cx, cy=cy):
            return copper * (0.82 + 0.18 * np.cos(70 * (u - cx)) * np.cos(70 * (v - cy)))[..., None]

        c.fill(circle(cx, cy, 0.17), strands)
        if defect == "missing_wire" and i == k:
            c.fill(circle(cx, cy, 0.17), (0.09, 0.07, 0.06))
    if defect == "cut_outer_insulation":
        a, depth = drng.uniform(0, 2 * np.pi), drng.uniform(0.08, 0.13)
        c.move((0, 0), a)  # the notch is cut at angle a
        notch = box(R, 0, depth, drng.uniform(0.04, 0.08))
        c.fill(intersect(notch, circle(0, 0, R)), (0.22, 0.21, 0.2))
    elif defect == "poke_insulation":
        paint_defect(c, "hole", drng, rings[k])


def _glyph(ch: str, x: float, y: float) -> Sdf:
    """A printed "0" or "5" centred at (x, y)."""
    w, h, r = 0.04, 0.075, 0.012  # half width, half height, half stroke
    if ch == "0":
        return subtract(box(x, y, w + r, h + r, w + r), box(x, y, w - r, h - r, w - r))
    pts = [(x + w, y - h), (x - w, y - h), (x - w, y), (x + w, y), (x + w, y + h), (x - w, y + h)]
    return polyline(pts, r)  # a "5"


def draw_capsule(c: Canvas, rng, defect: str | None, drng) -> None:
    """A two-tone pill (black and orange halves) with a white '500' imprint."""
    c.background((0.86, 0.85, 0.82))
    r, half = 0.24 * rng.uniform(0.98, 1.02), 0.55
    u0, depth = (
        (drng.uniform(-0.4, 0.4), drng.uniform(0.15, 0.28)) if defect == "squeeze" else (0, 0)
    )
    body = segment(-half, 0, half, 0, r)
    pinch = lambda u: 1 - depth * np.exp(-(((u - u0) / 0.14) ** 2))  # noqa: E731
    outline = shape(lambda u, v: body(u, v / pinch(u)) * pinch(u), body.bbox)
    dark, orange = np.asarray((0.14, 0.13, 0.13), F32), np.asarray((0.88, 0.55, 0.18), F32)
    orange = orange * rng.uniform(0.97, 1.03, 3).astype(F32)

    def shell(u, v, img):
        vn = np.clip(v / (r * pinch(u)), -1, 1)
        light = 1 - 0.35 * vn**2
        base = np.where((u < 0)[..., None], dark, orange) * light[..., None]
        return np.clip(base + (0.22 * np.exp(-(((vn + 0.45) / 0.18) ** 2)))[..., None], 0, 1)

    c.fill(outline, shell)
    c.fill(intersect(segment(0, -r, 0, r, c.px * 0.6), body), (0.05, 0.05, 0.05), 0.6)
    glyphs = [_glyph(ch, -0.4 + 0.12 * i, 0.0) for i, ch in enumerate("500")]
    if defect == "faulty_imprint":
        j = int(drng.integers(3))
        if drng.random() < 0.5:
            glyphs.pop(j)  # glyph not printed
        else:  # smeared: a shifted ghost of one glyph
            dx, dy = drng.uniform(0.025, 0.045) * drng.choice([-1, 1], 2)
            glyphs.append(_glyph("500"[j], -0.4 + 0.12 * j + dx, dy))
    for g in glyphs:
        c.fill(g, (0.93, 0.92, 0.9), 0.9)
    if defect in ("crack", "scratch"):
        paint_defect(c, defect, drng, body)


def _tri(t: np.ndarray) -> np.ndarray:
    return np.abs(2 * (t - np.floor(t + 0.5)))  # triangle wave in [0, 1], period 1


def draw_screw(c: Canvas, rng, defect: str | None, drng) -> None:
    """A metal screw lying on a light plate, seen from the side (grayscale)."""
    c.background((0.74, 0.74, 0.74), 0.1)
    ph = rng.uniform(0, 2 * np.pi, 2)
    c.img += (0.015 * np.sin(9 * c.x[:1] + ph[0]) * np.sin(7 * c.y[:, :1] + ph[1]))[..., None]
    tip_end, thread_lo, thread_hi = 0.72, -0.2, 0.5
    if defect == "manipulated_front":
        tip_end -= drng.uniform(0.1, 0.17)
    dent = (drng.uniform(-0.1, 0.4), drng.choice([-1.0, 1.0]), drng.uniform(0.06, 0.1))
    dented = defect == "thread_side"

    def half_width(u, v):
        hw = np.where(u < thread_lo, 0.085, 0.085 + 0.022 * _tri(u / 0.05))
        taper = np.clip((tip_end - u) / (tip_end - thread_hi), 0.05, 1)
        hw = hw * np.where(u > thread_hi, taper, 1)
        if dented:
            hw = np.where((np.abs(u - dent[0]) < dent[2]) & (v * dent[1] > 0), 0.05, hw)
        return hw

    def shank(u, v):
        return np.maximum(np.abs(v) - half_width(u, v), np.maximum(-0.47 - u, u - tip_end))

    def metal(u, v, img):
        vn = np.clip(v / half_width(u, v), -1, 1)
        ridges = np.where(u > thread_lo, 0.85 + 0.15 * _tri(u / 0.05 + 0.25), 1.0)
        shade = 0.32 + 0.3 * (1 - vn**2) + 0.12 * np.exp(-(((vn + 0.4) / 0.2) ** 2))
        return (shade * ridges)[..., None]

    c.fill(shape(shank, (-0.47, -0.11, tip_end, 0.11)), metal)
    head = box(-0.55, 0, 0.08, 0.2, r=0.04)
    c.fill(
        head,
        lambda u, v, img: ((0.3 + 0.28 * (1 - (v / 0.2) ** 2)) * (1 - 0.1 * (u + 0.55)))[..., None],
    )
    c.fill(box(-0.47, 0, 0.01, 0.19), (0.22, 0.22, 0.22), 0.7)
    if defect == "scratch_head":
        paint_defect(c, "scratch", drng, head)
    elif defect == "scratch_neck":
        paint_defect(c, "scratch", drng, box(-0.33, 0, 0.12, 0.08))


def draw_transistor(c: Canvas, rng, defect: str | None, drng) -> None:
    """A black TO-220 transistor (metal tab, body, three leads) inserted in a beige board."""
    board = np.asarray((0.8, 0.77, 0.68), F32) * F32(rng.uniform(0.98, 1.02))
    c.background(board)
    for x in (-0.22, 0.0, 0.22):  # the board's holes stay when the part is misplaced
        c.fill(circle(x, 0.62, 0.065), (0.5, 0.45, 0.36))
        c.fill(circle(x, 0.62, 0.032), (0.12, 0.1, 0.08))
    if defect == "misplaced":
        if drng.random() < 0.25:
            return  # transistor missing altogether
        a = drng.uniform(0.25, 0.5) * drng.choice([-1, 1])
        c.move(tuple(drng.uniform(-0.1, 0.1, 2)), a)
    k = int(drng.integers(3)) if defect else -1
    for i, x in enumerate((-0.22, 0.0, 0.22)):
        w, end = 0.028, 0.64
        if defect == "cut_lead" and i == k:
            end = drng.uniform(0.28, 0.45)
        lead = segment(x, 0.1, x, end - w, w)
        if defect == "bent_lead" and i == k:
            yb, dx = drng.uniform(0.3, 0.45), drng.uniform(0.08, 0.15) * drng.choice([-1, 1])
            lead = polyline([(x, 0.1), (x, yb), (x + dx, 0.6)], w)

        def shine(u, v, img, x=x):
            s = 0.62 + 0.25 * np.exp(-(((u - x + 0.008) / 0.015) ** 2))
            return np.stack([s, s, s * 0.96], -1)

        c.fill(lead, shine)
    c.fill(box(0, -0.4, 0.34, 0.17, r=0.02), (0.72, 0.72, 0.7))
    c.fill(circle(0, -0.43, 0.07), board)
    body = box(0, -0.04, 0.35, 0.22, r=0.025)
    c.fill(body, lambda u, v, img: (0.1 + 0.05 * np.clip(-v, 0, 1))[..., None])
    for j in range(6):
        c.fill(box(-0.2 + 0.08 * j, -0.1, 0.025, 0.035), (0.32, 0.32, 0.32), 0.8)
    if defect == "damaged_case":  # a chip broken off an edge shows the lighter filler
        ex, ey = drng.uniform(-0.3, 0.3), -0.04 + 0.22 * drng.choice([-1, 1])
        chip = circle(ex, ey, drng.uniform(0.07, 0.12))
        filler = np.asarray((0.42, 0.4, 0.36), F32) * F32(drng.uniform(0.8, 1))
        c.fill(intersect(chip, body), filler)


def _generic_design(name: str) -> Design:
    """Any other name: a rounded plate on a dark ground, its colour fixed by the name (not the
    seed), with the shared defects."""
    body = np.random.default_rng(zlib.crc32(name.encode())).uniform(0.45, 0.95, 3).astype(F32)
    plate = box(0, 0, 0.6, 0.45, r=0.08)

    def draw(c: Canvas, rng, defect: str | None, drng) -> None:
        c.background((0.12, 0.12, 0.14), 0.15)
        c.fill(plate, lambda u, v, img: body * (1.05 - 0.15 * (u**2 + v**2))[..., None])
        if defect is not None:
            paint_defect(c, defect, drng, plate)

    return Design(name, GENERIC_DEFECTS, False, draw)


_HANDMADE = {
    "cable": (
        ("cable_swap", "cut_outer_insulation", "missing_wire", "poke_insulation"),
        draw_cable,
    ),
    "capsule": (("crack", "faulty_imprint", "scratch", "squeeze"), draw_capsule),
    "screw": (("manipulated_front", "scratch_head", "scratch_neck", "thread_side"), draw_screw),
    "transistor": (("bent_lead", "cut_lead", "damaged_case", "misplaced"), draw_transistor),
}


def design_for(category: str) -> Design:
    if category not in _HANDMADE:
        return _generic_design(category)
    defects, draw = _HANDMADE[category]
    return Design(category, defects, category == "screw", draw)
