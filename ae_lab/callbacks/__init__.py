"""Lightning callbacks of ae-lab."""

from ae_lab.callbacks.media import WandbMediaCallback

__all__ = ["WandbMediaCallback"]
