"""What a run sends to W&B: the logger (test metrics to the summary), the online/offline choice and
the media callback (reconstructions, t-SNE maps, score tables and histograms)."""

from ae_lab.tracking.media import WandbMediaCallback

__all__ = ["WandbMediaCallback"]
