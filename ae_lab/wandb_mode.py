"""Online or offline, never a login prompt: the W&B mode a run or the analysis uses."""

import contextlib
import netrc
import os
import socket
from urllib.parse import urlparse

from ae_lab.errors import AeLabError


def ensure_wandb_mode() -> str:
    """The W&B mode to use: an explicit `WANDB_MODE` (offline, disabled) is respected; otherwise
    offline, with one line saying why, when there are no credentials or W&B's server does not
    answer within 3 s (instead of a login prompt or a long network timeout); `WANDB_MODE=online` then fails
    with the fix."""
    mode = os.environ.get("WANDB_MODE")
    if mode and mode != "online":
        return mode
    url = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai"))
    host, port = url.hostname or "", url.port or (80 if url.scheme == "http" else 443)
    has_key = bool(os.environ.get("WANDB_API_KEY"))
    with contextlib.suppress(OSError, netrc.NetrcParseError):  # the file `wandb login` writes
        has_key = has_key or bool(netrc.netrc(os.environ.get("NETRC")).authenticators(host))
    why = "no W&B credentials found"
    if has_key:
        try:
            socket.create_connection((host, port), timeout=3).close()
            return "online"
        except OSError as exc:
            why = f"W&B credentials found but {host} does not answer ({exc})"
    if mode == "online":
        raise AeLabError(
            f"WANDB_MODE=online but {why}: run `wandb login` once (and check the network), or log "
            "offline with WANDB_MODE=offline, or run without W&B with logger=none."
        )
    os.environ["WANDB_MODE"] = "offline"
    print(
        f"[ae-lab] {why}: logging offline under ./wandb (or $WANDB_DIR/wandb). Upload later with "
        "`wandb sync --sync-all` after `wandb login`."
    )
    return "offline"
