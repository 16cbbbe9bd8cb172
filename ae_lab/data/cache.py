"""Decode and resize a table's images once; later runs load the arrays from disk.

`joblib.Memory` stores them under the cache folder, keyed by the image size and every source
file's path, size and mtime (masks included): editing, adding or removing a file makes a new entry,
and only the most recently used entries are kept. On MVTec's 700-1024 px PNGs decoding costs
20-40 s per run on 2 cores, most of a run on a GPU; loading the cache, a fraction of a second.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
from filelock import FileLock
from tqdm.auto import tqdm

from ae_lab.data.table import load_image, load_mask

KEEP_ENTRIES = 8  # datasets x image sizes a machine keeps decoded
DECODE_VERSION = 2  # bump when the decoding changes, so old entries are not reused


def default_cache_dir() -> Path:
    """`$AE_LAB_CACHE`, else `~/.cache/ae_lab`."""
    return Path(os.environ.get("AE_LAB_CACHE") or "~/.cache/ae_lab").expanduser()


def _decode(
    images: list[str], masks: list[str | None], size: int, stamps: list[tuple]
) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 [N,3,S,S] and masks bool [N,S,S]. `stamps` (the decoding's version, each
    file's size and mtime) is not used here: joblib hashes it into the cache key."""

    def one(image: str, mask: str | None) -> tuple[np.ndarray, np.ndarray]:
        return load_image(image, size).transpose(2, 0, 1), load_mask(mask, size)

    # Threads suffice: Pillow releases the GIL while decoding and resizing.
    with ThreadPoolExecutor(max_workers=min(16, os.cpu_count() or 1)) as pool:
        desc = f"decoding {len(images)} images at {size}px"
        pairs = tqdm(pool.map(one, images, masks), desc, len(images), leave=False, disable=None)
        decoded_images, decoded_masks = zip(*pairs, strict=True)
    return np.stack(decoded_images), np.stack(decoded_masks)


def load_or_build(
    rows: pd.DataFrame, image_size: int, cache_dir: str | Path | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 [N, 3, S, S] and masks bool [N, S, S] for `rows` (in row order), from the cache
    under `cache_dir` (default `default_cache_dir()`), decoded and stored when missing, stale or
    unreadable."""
    cache_dir = default_cache_dir() if cache_dir is None else Path(cache_dir).expanduser()
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        memory, lock = joblib.Memory(cache_dir, verbose=0), FileLock(cache_dir / "decode.lock")
    except OSError as exc:
        warnings.warn(
            f"Cannot use the decode cache folder {cache_dir} ({exc}); decoding without it. Set "
            "`data.cache_dir` or the environment variable AE_LAB_CACHE to a writable folder.",
            stacklevel=2,
        )
        memory, lock = joblib.Memory(None), contextlib.nullcontext()
    images, masks = rows["path"].tolist(), rows["mask_path"].tolist()
    stamps = [DECODE_VERSION] + [
        (os.stat(f).st_size, os.stat(f).st_mtime_ns) for f in images + masks if f
    ]
    # Parallel runs on one machine wait here for the first one's cache instead of decoding again.
    with lock:
        out = memory.cache(_decode)(images, masks, int(image_size), stamps)
        memory.reduce_size(items_limit=KEEP_ENTRIES)
    return out
