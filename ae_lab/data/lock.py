"""An advisory lock file, so that concurrent runs on one machine (the grid runner, Hydra's joblib
launcher, several W&B agents) generate and cache shared data once instead of racing."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)


@contextmanager
def file_lock(path: str | Path, what: str) -> Iterator[bool]:
    """Hold an exclusive lock on `path` (created if missing) for the block; yield True.

    Yields False without locking where a lock is impossible (read-only folder, no `fcntl` on
    Windows, a file system without locks): the caller then works as if it were alone. `what` names
    the protected work in the line logged while waiting for another process.
    """
    try:
        import fcntl
    except ImportError:  # Windows
        fcntl = None
    fd = None
    if fcntl is not None:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log.warning("Waiting for another process that is %s (lock %s).", what, path)
                fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as exc:
            log.debug("No lock on %s (%s); continuing without it.", path, exc)
            if fd is not None:
                os.close(fd)
            fd = None
    try:
        yield fd is not None
    finally:
        if fd is not None:
            os.close(fd)  # closing the descriptor releases the lock
