"""Decode and resize a table's images once; later epochs and later runs load one file from disk.

A cache file holds uint8 images [N, 3, S, S] and bit-packed bool masks [N, S, S]. Its name carries
a hash of the root, image size and every source file's relative name, size and mtime_ns (masks
included), so editing, adding or removing a file makes a new cache. On MVTec's 700-1024 px PNGs
decoding costs seconds to minutes per run; loading the cache, a fraction of a second
(bench/README.md, decode cache).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import warnings
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from filelock import FileLock
from tqdm.auto import tqdm

from ae_lab.data.table import load_image, load_mask
from ae_lab.errors import AeLabError

CACHE_VERSION = 2  # bump when the decoding changes, so old caches are not reused


def default_cache_dir() -> Path:
    """`$AE_LAB_CACHE`, else `~/.cache/ae_lab`."""
    return Path(os.environ.get("AE_LAB_CACHE") or "~/.cache/ae_lab").expanduser()


def cache_key(rows: pd.DataFrame, image_size: int, root: str | Path) -> str:
    """sha256 over (root, size, each image's and mask's relative name, size, mtime)."""
    root = Path(root).expanduser().resolve()
    digest = hashlib.sha256(f"{CACHE_VERSION}\0{root}\0{int(image_size)}\n".encode())
    for file in [*rows["path"], *rows["mask_path"]]:
        if isinstance(file, str):  # else: no mask
            stat = os.stat(file)
            file = f"{os.path.relpath(file, root)}\0{stat.st_size}\0{stat.st_mtime_ns}"
        digest.update(f"{file}\n".encode())
    return digest.hexdigest()


def _decode(rows: pd.DataFrame, size: int) -> tuple[np.ndarray, np.ndarray]:
    def one(image: str, mask: str | None) -> tuple[np.ndarray, np.ndarray]:
        return load_image(image, size).transpose(2, 0, 1), load_mask(mask, size)

    # Threads suffice: Pillow releases the GIL while decoding and resizing.
    with ThreadPoolExecutor(max_workers=min(16, os.cpu_count() or 1)) as pool:
        pairs = pool.map(one, rows["path"], rows["mask_path"])
        desc = f"decoding {len(rows)} images at {size}px"
        images, masks = zip(
            *tqdm(pairs, total=len(rows), desc=desc, leave=False, disable=None), strict=True
        )
    return np.stack(images), np.stack(masks)


def load_or_build(
    rows: pd.DataFrame, image_size: int, cache_dir: str | Path | None, root: str | Path
) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 [N, 3, S, S] and masks bool [N, S, S] for `rows` (in row order), from the cache
    under `cache_dir` (default `default_cache_dir()`), decoding and writing it when missing, stale
    or corrupt."""
    cache_dir = default_cache_dir() if cache_dir is None else Path(cache_dir).expanduser()
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AeLabError(
            f"Cannot create the decode cache folder {cache_dir} ({exc}). Set `data.cache_dir` or "
            f"the environment variable AE_LAB_CACHE to a writable folder."
        ) from exc
    root_id = hashlib.sha256(str(Path(root).expanduser().resolve()).encode()).hexdigest()[:8]
    categories = "+".join(sorted(set(rows["category"])))[:60]
    prefix = f"{categories}-{image_size}px-{root_id}"
    file = cache_dir / f"{prefix}-{cache_key(rows, image_size, root)[:20]}.npz"
    # Parallel runs on one machine wait here for the first one's cache instead of decoding again.
    with FileLock(cache_dir / f"{prefix}.lock"):
        try:
            with np.load(file) as z:
                return z["images"], np.unpackbits(z["masks"], axis=-1, count=image_size).view(bool)
        except FileNotFoundError:
            pass
        except (OSError, ValueError, KeyError, EOFError, TypeError, zipfile.BadZipFile) as exc:
            warnings.warn(
                f"Decode cache {file} is unreadable ({exc}); rebuilding it.", stacklevel=2
            )
        images, masks = _decode(rows, image_size)
        tmp = file.with_name(f"{file.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as f:
                np.savez(f, images=images, masks=np.packbits(masks, axis=-1))
            os.replace(tmp, file)  # atomic: a killed run never leaves a half-written cache
        except OSError as exc:
            warnings.warn(
                f"Could not write the decode cache {file} ({exc}); continuing without it.",
                stacklevel=2,
            )
        # Caches of older versions of the same files (and a failed write) are dead weight.
        for stale in [tmp, *cache_dir.glob(f"{prefix}-*.npz")]:
            if stale != file:
                with contextlib.suppress(OSError):
                    stale.unlink(missing_ok=True)
    return images, masks
