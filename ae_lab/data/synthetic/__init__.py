"""A synthetic stand-in for MVTec AD, written in exactly MVTec's folder layout.

    <out>/<category>/train/good/000.png
    <out>/<category>/test/good/000.png
    <out>/<category>/test/<defect>/000.png
    <out>/<category>/ground_truth/<defect>/000_mask.png   (binary 0/255 'L', same size as image)
    <out>/synthetic.json                                  (parameters, counts, nuisance list)

Looks: `cable` (three coloured wires in a round sheath), `capsule` (two-tone pill with a '500'
imprint), `screw` (grayscale, saved as 'L' like MVTec's screw) and `transistor` (black TO-220 on a
board) are hand-made, each with 4 defect types with MVTec names (see `objects.design_for`); any
other name gets a plain plate coloured by the name's CRC32, with crack/hole/scratch defects. A test
set is about 1/3 good, the rest spread evenly over the defect types. Masks are exactly the pixels
the defect changed by more than `MASK_THRESHOLD`, found by diffing against the clean render.

Natural variation on every image: shift up to 4 px (at 256 px), rotation up to 3 degrees, scale
+-2%, part colour jitter, per-channel gain +-3%, brightness +-5%, Gaussian sensor noise
(sigma 0.006-0.014). Nuisances (not defects) on a few files, listed per file in synthetic.json
(`nuisances`, with each kind's share of the files in `nuisance_rates`):
    illumination: test only, good and defective: brightness x0.72-0.82 or x1.18-1.30 plus a
        linear light gradient of 8-15% across the image (8% of each test subset);
    pose: test only, good and defective: shift 10-16 px, rotation 6-10 degrees (8%);
    jpeg: saved as .jpg, quality 90, mask still <stem>_mask.png (4%, train and test);
    grayscale / rgba: colour categories saved as 'L' / RGBA PNG with alpha 255 (2% each, train
        and test);
    odd_size: saved at (image_size + 13) x image_size px, non-square, mask too (2%).
Every nuisance appears at least once per split it applies to, even in tiny sets.

Deterministic: every image is seeded by (seed, category, split, defect, index), so the same
parameters give byte-identical files. Written into a hidden temporary folder next to `out_dir`,
moved in per category, and `synthetic.json` is written last: `is_complete` trusts only that marker.
Each category folder carries a `.synthetic` stamp; a folder without one (real data) is never
replaced.
"""

import json
import shutil
import tempfile
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from ae_lab.data.synthetic.draw import Canvas
from ae_lab.data.synthetic.objects import Design, design_for
from ae_lab.data.table import DEFAULT_CATEGORIES
from ae_lab.errors import AeLabError

MARKER = "synthetic.json"
OWNER = ".synthetic"  # in each category folder
FORMAT_VERSION = 2  # 2: plain procedural plate, simpler capsule '0' glyph
# Nuisances: what real inspection images have that is NOT a defect; a detector must not flag them.
# Each kind is described in the module docstring; this is the share of files that get it.
NUISANCE_RATES = dict(
    illumination=0.08, pose=0.08, jpeg=0.04, grayscale=0.02, rgba=0.02, odd_size=0.02
)
SCENE_KINDS = ("illumination", "pose")  # change the picture: drawn per test subset
FILE_KINDS = ("jpeg", "grayscale", "rgba", "odd_size")  # change the file: mutually exclusive
ODD_EXTRA = 13
# A pixel belongs to the defect when the defect changed it by more than this (0..1 scale):
# well above antialiasing round-off, well below any defect's contrast.
MASK_THRESHOLD = 0.06


def check_settings(
    categories: Sequence[str] = DEFAULT_CATEGORIES,
    n_train: int = 220,
    n_test: int = 120,
    seed: int = 0,
    image_size: int = 256,
) -> dict:
    """The generator's settings (the keyword arguments of `generate` and `is_complete`), checked:
    `n_train` good training images and `n_test` test images (about 1/3 good) per category,
    `image_size` px squares. Raises AeLabError for settings that cannot make a dataset."""
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
    sizes = {"n_train": n_train, "n_test": n_test, "seed": seed, "image_size": image_size}
    return {"categories": categories} | {k: int(v) for k, v in sizes.items()}


def _nuisance_count(kind: str, n: int) -> int:
    return 0 if n == 0 else min(n, max(1, round(NUISANCE_RATES[kind] * n)))


def _assign_nuisances(
    rng: np.random.Generator, n_train: int, n_good: int, n_defective: int, design: Design
) -> tuple[list[set[str]], list[set[str]]]:
    """Nuisance kinds of each train image and each test image (test order: good, then defective);
    grayscale designs get no grayscale/rgba files. Each kind goes to a fixed share of the files (at
    least one file per split where it applies) so that the analysis can check scores on it."""
    file_kinds = [k for k in FILE_KINDS if not design.grayscale or k not in ("grayscale", "rgba")]

    def file_nuisances(n: int) -> list[set[str]]:
        out: list[set[str]] = [set() for _ in range(n)]
        order, start = rng.permutation(n), 0
        for kind in file_kinds:
            k = _nuisance_count(kind, n)
            for i in order[start : start + k]:
                out[i].add(kind)
            start += k
        return out

    train = file_nuisances(n_train)
    test = file_nuisances(n_good + n_defective)
    for kind in SCENE_KINDS:
        for lo, n in ((0, n_good), (n_good, n_defective)):
            for i in rng.choice(n, _nuisance_count(kind, n), replace=False):
                test[lo + int(i)].add(kind)
    return train, test


def _pose(rng: np.random.Generator, large: bool) -> tuple[tuple[float, float], float]:
    """(shift in normalised units, rotation in radians) of one image."""
    unit = 2.0 / 256  # one pixel at 256 px, so poses scale with the image
    if large:
        r, a = rng.uniform(10, 16) * unit, rng.uniform(0, 2 * np.pi)
        shift = (r * np.cos(a), r * np.sin(a))
        angle = np.deg2rad(rng.uniform(6, 10)) * rng.choice([-1, 1])
    else:
        shift = tuple(rng.uniform(-4, 4, 2) * unit)
        angle = np.deg2rad(rng.uniform(-3, 3))
    return (float(shift[0]), float(shift[1])), float(angle)


def _photograph(img: np.ndarray, rng: np.random.Generator, illumination: bool) -> np.ndarray:
    """[H, W, C] float render -> [H, W, C] uint8 with lighting jitter and sensor noise."""
    h, w, ch = img.shape
    gain = rng.uniform(0.97, 1.03, ch) * rng.uniform(0.95, 1.05)
    img = img * gain.astype(np.float32) + np.float32(rng.uniform(-0.015, 0.015))
    if illumination:
        level = rng.uniform(0.72, 0.82) if rng.random() < 0.5 else rng.uniform(1.18, 1.3)
        a, g = rng.uniform(0, 2 * np.pi), rng.uniform(0.08, 0.15)
        x = np.linspace(-1, 1, w, dtype=np.float32)[None, :]
        y = np.linspace(-1, 1, h, dtype=np.float32)[:, None]
        img = img * (np.float32(level) * (1 + g * (np.cos(a) * x + np.sin(a) * y)))[..., None]
    img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(rng.uniform(0.006, 0.014))
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def _save(stem: Path, img: np.ndarray, mask: np.ndarray | None, mask_path: Path, kinds: set[str]):
    """Write image `stem`.png/.jpg (and `mask_path` when there is a mask) applying the file
    nuisances; returns the image path. `img`: [H, W, C] uint8 (C = 1 or 3); `mask`: [H, W] bool."""
    image = Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img)
    if "grayscale" in kinds or "rgba" in kinds:
        image = image.convert("L" if "grayscale" in kinds else "RGBA")
    odd_size = (image.width + ODD_EXTRA, image.height) if "odd_size" in kinds else None
    if odd_size:
        image = image.resize(odd_size, Image.Resampling.BILINEAR)
    path = stem.with_suffix(".jpg" if "jpeg" in kinds else ".png")
    image.save(path, **({"quality": 90} if "jpeg" in kinds else {"compress_level": 1}))
    if mask is not None:
        m = Image.fromarray(mask.astype(np.uint8) * 255)
        (m.resize(odd_size, Image.Resampling.NEAREST) if odd_size else m).save(mask_path)
    return path


def render_sample(
    design: Design, size: int, key: list[int], defect: str, kinds: set[str]
) -> tuple[np.ndarray, np.ndarray | None]:
    """One image as [H, W, C] uint8 (C = 1 for grayscale designs) and, for a defect (not "good"),
    its [H, W] bool mask. `key` seeds every random stream, so the same key gives the same bytes."""
    pose_rng, defect_rng, camera_rng = (np.random.default_rng([*key, s]) for s in range(3))
    shift, angle = _pose(pose_rng, large="pose" in kinds)
    scale = float(pose_rng.uniform(0.98, 1.02))

    def draw(kind: str | None) -> np.ndarray:
        canvas = Canvas(size, shift, angle, scale)
        # The look stream restarts for every render so clean and defective share everything else.
        design.draw(canvas, np.random.default_rng([*key, 9]), kind, defect_rng)
        return np.clip(canvas.img, 0, 1)

    img, mask = draw(None), None
    if defect != "good":
        clean, best = img, -1
        # Redraw a defect that came out too small (e.g. mostly off the part) with fresh parameters.
        for _ in range(8):
            candidate = draw(defect)
            changed = np.abs(candidate - clean).max(-1) > MASK_THRESHOLD
            if changed.sum() > best:
                img, mask, best = candidate, changed, int(changed.sum())
            if best >= max(3, round(size * size * 0.00025)):
                break
        if best == 0:
            raise RuntimeError(f"{design.name}/{defect}: the defect changed no pixel at {size} px")
    if design.grayscale:
        img = img.mean(-1, keepdims=True)
    camera = _photograph(img, camera_rng, illumination="illumination" in kinds)
    return camera, mask


def _write_category(root: Path, category: str, p: dict) -> dict:
    design, size, seed = design_for(category), p["image_size"], p["seed"]
    n_good = min(max(1, round(p["n_test"] / 3)), p["n_test"] - len(design.defects))
    per, extra = divmod(p["n_test"] - n_good, len(design.defects))
    cat_key = zlib.crc32(category.encode())
    rng = np.random.default_rng([seed, cat_key, 7])
    train_k, test_k = _assign_nuisances(rng, p["n_train"], n_good, p["n_test"] - n_good, design)
    # (split, defect, nuisance kinds of each image); test_k lists good, then each defect in turn
    groups = [("train", "good", train_k), ("test", "good", test_k[:n_good])]
    for i, defect in enumerate(design.defects):
        n = per + (i < extra)
        groups.append(("test", defect, test_k[n_good : n_good + n]))
        n_good += n
    carried: dict[str, list[str]] = {}
    for split, defect, kinds_of in groups:
        folder = root / category / split / defect
        masks = root / category / "ground_truth" / defect
        folder.mkdir(parents=True)
        if defect != "good":
            masks.mkdir(parents=True)
        d_idx = 0 if defect == "good" else 1 + design.defects.index(defect)
        for i, kinds in enumerate(kinds_of):
            key = [seed, cat_key, int(split == "test"), d_idx, i]
            img, mask = render_sample(design, size, key, defect, kinds)
            path = _save(folder / f"{i:03d}", img, mask, masks / f"{i:03d}_mask.png", kinds)
            if kinds:
                carried[path.relative_to(root).as_posix()] = sorted(kinds)
    # Marks the folder as generated, so a rerun may replace it (and never real data).
    (root / category / OWNER).write_text(json.dumps(p))
    counts = {f"{split}/{defect}": len(kinds_of) for split, defect, kinds_of in groups}
    return {"defects": list(design.defects), "counts": counts, "nuisances": carried}


def _ours(folder: Path) -> bool:
    return (folder / OWNER).is_file()


def generate(out_dir: str | Path, **settings) -> Path:
    """Write the synthetic dataset under `out_dir` -> out_dir; `settings`: see `check_settings`.

    Replaces these categories there; keeps the other generated ones when they were made with the
    same settings (each class's images depend only on seed, class name and sizes, so a run on
    `[cable]` must not delete `screw` under a parallel run that reads it)."""
    p = check_settings(**settings)
    out = Path(out_dir).expanduser().resolve()
    foreign = [c for c in p["categories"] if (out / c).exists() and not _ours(out / c)]
    if foreign:
        raise AeLabError(
            f"Synthetic data: {out} already has folder(s) {foreign} that the generator did not "
            "write (real MVTec data?). Generate into another folder (`data.root`) or move them."
        )
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.tmp-", dir=out.parent) as tmp:
        info = {c: _write_category(Path(tmp), c, p) for c in p["categories"]}
        prev = read_marker(out) or {}
        keep = [c for c in _generated(prev, p) if c not in p["categories"] and _ours(out / c)]
        (out / MARKER).unlink(missing_ok=True)  # from here on the folder counts as incomplete
        for c in out.iterdir():
            if c.name not in keep and _ours(c):
                shutil.rmtree(c)
        for c in p["categories"]:
            (Path(tmp) / c).rename(out / c)
    record = {
        "generator": __name__,
        "version": FORMAT_VERSION,
        "params": {**p, "categories": keep + p["categories"]},
        "nuisance_rates": NUISANCE_RATES,
        "categories": {c: prev["categories"][c] for c in keep} | info,
    }
    (out / f"{MARKER}.part").write_text(json.dumps(record, indent=1))
    (out / f"{MARKER}.part").replace(out / MARKER)
    return out


def read_marker(out_dir: str | Path) -> dict | None:
    """The parsed `synthetic.json` of a complete dataset, or None."""
    try:
        return json.loads((Path(out_dir).expanduser() / MARKER).read_text())
    except (OSError, ValueError):
        return None


def _generated(record: dict, params: dict) -> list[str]:
    """The categories a marker `record` lists if it was written with `params` (up to the list of
    categories), else none."""
    recorded = record.get("params") or {}
    same = all(recorded.get(k) == v for k, v in params.items() if k != "categories")
    return (
        recorded.get("categories", []) if same and record.get("version") == FORMAT_VERSION else []
    )


def is_complete(out_dir: str | Path, **settings) -> bool:
    """True only if `out_dir` holds a finished dataset generated with these `settings` (see
    `check_settings`) for (at least) these categories: a set of four classes serves a run on one."""
    wanted = check_settings(**settings)
    have, root = _generated(read_marker(out_dir) or {}, wanted), Path(out_dir).expanduser()
    return all(c in have and (root / c).is_dir() for c in wanted["categories"])
