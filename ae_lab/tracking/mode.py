"""Decide between online and offline W&B without ever prompting for a login."""

import os
from pathlib import Path
from urllib.parse import urlparse


def has_wandb_credentials() -> bool:
    """True when an API key is in `WANDB_API_KEY` or in the netrc file that `wandb login` writes."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")
    try:  # W&B's own reader; internal, so fall back to reading the netrc file.
        from wandb.sdk.lib.wbauth.wbnetrc import read_netrc_auth

        return bool(read_netrc_auth(host=host))
    except Exception:
        netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
        hostname = urlparse(host).hostname or ""
        return netrc.is_file() and hostname in netrc.read_text(errors="ignore")


def ensure_wandb_mode() -> str:
    """Return the W&B mode to use; with no credentials and no explicit mode, switch to offline.

    An explicit `WANDB_MODE` (online, offline, disabled) is always respected.
    """
    mode = os.environ.get("WANDB_MODE")
    if mode:
        return mode
    if has_wandb_credentials():
        return "online"
    os.environ["WANDB_MODE"] = "offline"
    print(
        "[ae-lab] No W&B credentials found: logging offline under ./wandb (or $WANDB_DIR/wandb). "
        "Upload later with `wandb sync --sync-all` after `wandb login`."
    )
    return "offline"
