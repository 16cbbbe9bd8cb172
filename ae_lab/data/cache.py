"""Decode and resize a table's images once; later epochs and later runs load one file from disk.

A cache file holds uint8 images [N, 3, S, S] and bit-packed bool masks [N, S, S]. Its name carries
a hash of the root, categories, image size and every source file's relative name, size and
mtime_ns (masks included), so editing, adding or removing a file makes a new cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import warnings
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ae_lab.data.io import load_image, load_mask
from ae_lab.data.lock import file_lock
from ae_lab.errors import AeLabError

log = logging.getLogger(__name__)
CACHE_VERSION = 1  # bump when the decoding changes, so old caches are not reused
_LOAD_ERRORS = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile)


def default_cache_dir() -> Path:
    """`$AE_LAB_CACHE`, else `~/.cache/ae_lab`."""
    return Path(os.environ.get("AE_LAB_CACHE") or "~/.cache/ae_lab").expanduser()


def cache_key(rows: pd.DataFrame, image_size: int, root: str | Path) -> str:
    """sha256 over (root, categories, size, each image's and mask's relative name, size, mtime)."""
    root = Path(root).expanduser().resolve()
    digest = hashlib.sha256()
    head = {
        "version": CACHE_VERSION,
        "root": str(root),
        "categories": sorted(set(rows["category"])),
        "image_size": int(image_size),
    }
    digest.update(json.dumps(head).encode())
    for image, mask in zip(rows["path"], rows["mask_path"], strict=True):
        for file in (image, mask):
            if not isinstance(file, str):  # no mask
                digest.update(b"-\n")
                continue
            try:
                stat = os.stat(file)
            except OSError as exc:
                raise AeLabError(
                    f"{file} disappeared after the dataset was scanned ({exc}). Check that nothing "
                    f"else is modifying {root}, then run again."
                ) from exc
            rel = os.path.relpath(file, root)
            digest.update(f"{rel}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _cache_file(rows: pd.DataFrame, image_size: int, root: Path, cache_dir: Path, key: str) -> Path:
    categories = "+".join(sorted(set(rows["category"])))[:60]
    splits = "+".join(sorted(set(rows["split"])))
    root_id = hashlib.sha256(str(root).encode()).hexdigest()[:8]
    return cache_dir / f"{categories}-{splits}-{image_size}px-{root_id}-{key[:20]}.npz"


def _load(file: Path, key: str, n: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    with open(file, "rb") as f:  # our own handle: np.load leaks it when the file is garbage
        z = np.load(f, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise ValueError("not an .npz archive")
        with z:
            if str(z["key"]) != key:
                raise ValueError("stored key does not match the file name")
            images = z["images"]
            masks = np.unpackbits(z["masks"], axis=-1, count=size).view(bool)
    if images.dtype != np.uint8 or images.shape != (n, 3, size, size):
        raise ValueError(f"images have shape {images.shape}, expected {(n, 3, size, size)}")
    if masks.shape != (n, size, size):
        raise ValueError(f"masks have shape {masks.shape}, expected {(n, size, size)}")
    return images, masks


def _decode(rows: pd.DataFrame, size: int) -> tuple[np.ndarray, np.ndarray]:
    n = len(rows)
    images = np.empty((n, 3, size, size), dtype=np.uint8)
    masks = np.zeros((n, size, size), dtype=bool)
    paths, mask_paths = list(rows["path"]), list(rows["mask_path"])

    def work(i: int) -> None:
        images[i] = load_image(paths[i], size).transpose(2, 0, 1)
        mask = mask_paths[i]
        masks[i] = load_mask(mask if isinstance(mask, str) else None, size)

    # Threads suffice: Pillow releases the GIL while decoding and resizing.
    pool = ThreadPoolExecutor(max_workers=min(16, os.cpu_count() or 1))
    try:
        desc = f"decoding {n} images at {size}px"
        for _ in tqdm(pool.map(work, range(n)), total=n, desc=desc, disable=None, leave=False):
            pass
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # stop early on the first unreadable file
    return images, masks


def _save(file: Path, key: str, images: np.ndarray, masks: np.ndarray) -> None:
    tmp = file.with_name(f"{file.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            np.savez(f, key=np.array(key), images=images, masks=np.packbits(masks, axis=-1))
        os.replace(tmp, file)  # atomic: readers never see a half-written cache
    except OSError as exc:
        _remove(tmp)  # on a read-only file system removing fails too (EROFS)
        warnings.warn(
            f"Could not write the decode cache {file} ({exc}); continuing without it.", stacklevel=3
        )
        return
    # Caches of older versions of the same files are dead weight.
    for stale in file.parent.glob(file.name.rsplit("-", 1)[0] + "-*.npz"):
        if stale != file:
            _remove(stale)


def _remove(path: Path) -> None:
    """Delete `path` if possible; cleaning up must never fail the run."""
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        log.debug("Could not remove %s: %s", path, exc)


def load_or_build(
    rows: pd.DataFrame, image_size: int, cache_dir: str | Path | None, root: str | Path
) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 [N, 3, S, S] and masks bool [N, S, S] for `rows` (in row order), from the cache
    under `cache_dir` (default `default_cache_dir()`), decoding and writing it when missing, stale
    or corrupt."""
    if rows.empty:  # no file named after no categories
        size = int(image_size)
        return np.empty((0, 3, size, size), np.uint8), np.empty((0, size, size), bool)
    root = Path(root).expanduser().resolve()
    cache_dir = default_cache_dir() if cache_dir is None else Path(cache_dir).expanduser()
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AeLabError(
            f"Cannot create the decode cache folder {cache_dir} ({exc}). Set `data.cache_dir` or "
            f"the environment variable AE_LAB_CACHE to a writable folder."
        ) from exc
    key = cache_key(rows, image_size, root)
    file = _cache_file(rows, image_size, root, cache_dir, key)
    if (cached := _try_load(file, key, len(rows), image_size)) is not None:
        return cached
    # Parallel runs on one machine wait here for the first one's cache instead of decoding again.
    lock = file.with_name(file.name.rsplit("-", 1)[0] + ".lock")
    with file_lock(lock, f"building the decode cache {file.name}"):
        if (cached := _try_load(file, key, len(rows), image_size)) is not None:
            return cached
        start = time.perf_counter()
        images, masks = _decode(rows, image_size)
        log.info("Decoded %d images in %.1fs -> %s", len(rows), time.perf_counter() - start, file)
        _save(file, key, images, masks)
    return images, masks


def _try_load(file: Path, key: str, n: int, size: int) -> tuple[np.ndarray, np.ndarray] | None:
    if not file.exists():
        return None
    try:
        return _load(file, key, n, size)
    except _LOAD_ERRORS as exc:
        warnings.warn(f"Decode cache {file} is unreadable ({exc}); rebuilding it.", stacklevel=3)
    return None
