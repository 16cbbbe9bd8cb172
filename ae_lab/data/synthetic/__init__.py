"""A synthetic stand-in for MVTec AD, written in exactly MVTec's folder layout.

    <out>/<category>/train/good/000.png
    <out>/<category>/test/good/000.png
    <out>/<category>/test/<defect>/000.png
    <out>/<category>/ground_truth/<defect>/000_mask.png   (binary 0/255 'L', same size as image)
    <out>/synthetic.json                                  (parameters, counts, nuisance list)

Looks: `cable` (three coloured wires in a round sheath), `capsule` (two-tone pill with a '500'
imprint), `screw` (grayscale, saved as 'L' like MVTec's screw) and `transistor` (black TO-220 on a
board) are hand-made; any other name gets a procedural object fixed by the name's CRC32. Each
category has 2-4 defect types with MVTec names (see `objects.design_for`). A test set is about
1/3 good, the rest spread evenly over the defect types. Masks are exactly the pixels the defect
changed by more than `render.MASK_THRESHOLD`, found by diffing against the clean render.

Natural variation on every image: shift up to 4 px (at 256 px), rotation up to 3 degrees, scale
+-2%, part colour jitter, per-channel gain +-3%, brightness +-5%, Gaussian sensor noise
(sigma 0.006-0.014). Nuisances (not defects) on a few files, listed per file in synthetic.json:
    illumination: test only, good and defective: brightness x0.72-0.82 or x1.18-1.30 plus a
        linear light gradient (8% of each test subset);
    pose: test only, good and defective: shift 10-16 px, rotation 6-10 degrees (8%);
    jpeg: saved as .jpg, quality 90, mask still <stem>_mask.png (4%, train and test);
    grayscale / rgba: colour categories saved as 'L' / RGBA PNG (2% each, train and test);
    odd_size: saved at (image_size + 13) x image_size px, non-square, mask too (2%).
Every nuisance appears at least once per split it applies to, even in tiny sets.

Deterministic: every image is seeded by (seed, category, split, defect, index), so the same
parameters give byte-identical files. Written into a hidden temporary folder next to `out_dir`,
moved in per category, and `synthetic.json` is written last: `is_complete` trusts only that marker.
Each category folder carries a `.synthetic` stamp; a folder without one (real data) is never
replaced.
"""

from __future__ import annotations

import json
import shutil
import uuid
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ae_lab.data.synthetic import nuisances
from ae_lab.data.synthetic.objects import Design, design_for
from ae_lab.data.synthetic.render import render_sample
from ae_lab.data.table import DEFAULT_CATEGORIES
from ae_lab.errors import AeLabError

MARKER = "synthetic.json"
OWNER = ".synthetic"  # in each category folder
FORMAT_VERSION = 1


def _params(categories, n_train, n_test, seed, image_size) -> dict:
    categories = [categories] if isinstance(categories, str) else list(categories)
    bad = [c for c in categories if not c or "/" in c or "\\" in c or c.startswith(".")]
    if not categories or bad or len(set(categories)) != len(categories):
        raise AeLabError(
            f"Synthetic data: categories {categories} must be a non-empty list of distinct folder "
            "names (no '/', not starting with '.'), e.g. [cable, screw]."
        )
    most = max(len(design_for(c).defects) for c in categories)
    if n_train < 1 or n_test < most + 1 or image_size < 32:
        raise AeLabError(
            f"Synthetic data: n_train={n_train}, n_test={n_test}, image_size={image_size} is too "
            f"small: need n_train >= 1, n_test >= {most + 1} (one good image plus one per defect "
            "type of these categories) and image_size >= 32."
        )
    return dict(
        categories=categories,
        n_train=int(n_train),
        n_test=int(n_test),
        seed=int(seed),
        image_size=int(image_size),
    )


def _split_counts(design: Design, n_test: int) -> tuple[int, dict[str, int]]:
    n_good = max(1, round(n_test / 3))
    n_good = min(n_good, n_test - len(design.defects))
    per, extra = divmod(n_test - n_good, len(design.defects))
    return n_good, {d: per + (i < extra) for i, d in enumerate(design.defects)}


def _ours(folder: Path) -> bool:
    return (folder / OWNER).is_file()


def _write_category(root: Path, category: str, p: dict) -> dict:
    design, size, seed = design_for(category), p["image_size"], p["seed"]
    n_good, per_defect = _split_counts(design, p["n_test"])
    cat_key = zlib.crc32(category.encode())
    train_k, test_k = nuisances.assign(
        np.random.default_rng([seed, cat_key, 7]),
        p["n_train"],
        n_good,
        p["n_test"] - n_good,
        color=not design.grayscale,
    )
    jobs = [("train", "good", i, train_k[i]) for i in range(p["n_train"])]
    jobs += [("test", "good", i, test_k[i]) for i in range(n_good)]
    t = n_good
    for defect, n in per_defect.items():
        jobs += [("test", defect, i, test_k[t + i]) for i in range(n)]
        t += n
    (root / category).mkdir(parents=True)
    # Marks the folder as generated, so a rerun may replace it (and never real data).
    (root / category / OWNER).write_text(json.dumps(p))
    carried: dict[str, list[str]] = {}
    for split, defect, i, kinds in jobs:
        folder = root / category / split / defect
        folder.mkdir(parents=True, exist_ok=True)
        d_idx = 0 if defect == "good" else 1 + design.defects.index(defect)
        key = [seed, cat_key, int(split == "test"), d_idx, i]
        img, mask = render_sample(design, size, key, None if defect == "good" else defect, kinds)
        mask_dir = root / category / "ground_truth" / defect
        if mask is not None:
            mask_dir.mkdir(parents=True, exist_ok=True)
        path = nuisances.save(folder / f"{i:03d}", img, mask, mask_dir / f"{i:03d}", kinds)
        if kinds:
            carried[path.relative_to(root).as_posix()] = sorted(kinds)
    return {
        "defects": list(design.defects),
        "counts": {
            "train/good": p["n_train"],
            "test/good": n_good,
            **{f"test/{d}": n for d, n in per_defect.items()},
        },
        "nuisances": carried,
    }


def generate(
    out_dir: str | Path,
    categories: Sequence[str] = DEFAULT_CATEGORIES,
    n_train: int = 220,
    n_test: int = 120,
    seed: int = 0,
    image_size: int = 256,
) -> Path:
    """Write the synthetic dataset under `out_dir` (replacing these categories there) -> out_dir."""
    p = _params(categories, n_train, n_test, seed, image_size)
    out = Path(out_dir).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        foreign = [c for c in p["categories"] if (out / c).exists() and not _ours(out / c)]
        if foreign:
            raise AeLabError(
                f"Synthetic data: {out} already has folder(s) {foreign} that the generator did not "
                "write (real MVTec data?). Generate into another folder (`data.root`) or move them."
            )
        info = {c: _write_category(tmp, c, p) for c in p["categories"]}
        prev = read_marker(out) or {}
        old = prev.get("params", {}).get("categories", [])
        # Classes generated earlier with the same settings stay: each class's images depend only
        # on (seed, class name, sizes), so a run on `[cable]` must not delete `screw` under a
        # parallel run that reads it.
        same = _same_settings(prev, p)
        keep = [c for c in old if same and c not in p["categories"] and _ours(out / c)]
        (out / MARKER).unlink(missing_ok=True)  # from here on the folder counts as incomplete
        for c in (set(old) | set(p["categories"])) - set(keep):
            if _ours(out / c):
                shutil.rmtree(out / c)
        for c in p["categories"]:
            (tmp / c).rename(out / c)
        record = {
            "generator": __name__,
            "version": FORMAT_VERSION,
            "params": {**p, "categories": keep + p["categories"]},
            "nuisance_kinds": nuisances.KINDS,
            "nuisance_rates": nuisances.RATES,
            "categories": {c: prev.get("categories", {}).get(c, {}) for c in keep} | info,
        }
        (out / f"{MARKER}.part").write_text(json.dumps(record, indent=1))
        (out / f"{MARKER}.part").replace(out / MARKER)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def read_marker(out_dir: str | Path) -> dict | None:
    """The parsed `synthetic.json` of a complete dataset, or None."""
    marker = Path(out_dir).expanduser() / MARKER
    try:
        return json.loads(marker.read_text())
    except (OSError, ValueError):
        return None


def _same_settings(record: dict, params: dict) -> bool:
    """Whether a marker `record` was written with `params` up to the list of categories."""
    recorded = record.get("params") or {}
    return record.get("version") == FORMAT_VERSION and all(
        recorded.get(k) == v for k, v in params.items() if k != "categories"
    )


def is_complete(
    out_dir: str | Path,
    categories: Sequence[str] = DEFAULT_CATEGORIES,
    n_train: int = 220,
    n_test: int = 120,
    seed: int = 0,
    image_size: int = 256,
) -> bool:
    """True only if `out_dir` holds a finished dataset generated with these parameters for (at
    least) these categories: a set of four classes serves a run on one of them."""
    record = read_marker(out_dir)
    if record is None:
        return False
    try:
        wanted = _params(categories, n_train, n_test, seed, image_size)
    except AeLabError:
        return False
    root = Path(out_dir).expanduser()
    have = set(record.get("params", {}).get("categories", []))
    return (
        _same_settings(record, wanted)
        and set(wanted["categories"]) <= have
        and all((root / c).is_dir() for c in wanted["categories"])
    )


__all__ = ["DEFAULT_CATEGORIES", "generate", "is_complete", "read_marker"]
