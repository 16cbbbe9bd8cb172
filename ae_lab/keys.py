"""Metric and media keys (`stage/name`), defined once for the logger and the analysis."""

# Per-epoch scalars (x-axis: `epoch`).
EPOCH = "epoch"
TRAIN_LOSS = "train/loss"
VAL_LOSS = "val/loss"
VAL_L1 = "val/l1"
VAL_L2 = "val/l2"
# 1 - mean SSIM (named for what it is): lower is better, like the other errors.
VAL_ONE_MINUS_SSIM = "val/one_minus_ssim"
LOSS_CURVES = (TRAIN_LOSS, VAL_LOSS, VAL_L1, VAL_L2, VAL_ONE_MINUS_SSIM)
# One W&B panel with both curves (a line-series chart logged at the end of training).
TRAIN_VAL_LOSS = "train/loss_and_val_loss"

# Media.
VAL_RECONSTRUCTIONS = "val/reconstructions"
VAL_LATENT_TSNE = "val/latent_tsne"
VAL_LATENT_TSNE_TABLE = "val/latent_tsne_table"
VAL_LATENT_TSNE_IMAGE = "val/latent_tsne_image"  # static (matplotlib) twin of val/latent_tsne
TEST_LATENT_TSNE = "test/latent_tsne"
TEST_RECONSTRUCTIONS = "test/reconstructions"
TEST_SCORES = "test/scores"
TEST_ERROR_HISTOGRAMS = "test/error_histograms"  # per class: reconstruction error in the run's loss
TEST_SCORE_HISTOGRAMS = "test/score_histograms"  # per class: the smoothed anomaly score
# per class: static images, one panel per defect type (good vs that defect), the anomaly score
TEST_SCORE_HISTOGRAM_IMAGES = "test/score_histogram_images"

# Run summary: the path of the run's best checkpoint, and of the one its test metrics come from.
CHECKPOINT_BEST = "checkpoint/best"
CHECKPOINT_EVALUATED = "checkpoint/evaluated"

# Test summary metrics. `test/image_auroc` is the mean of the per-class image AUROCs (MVTec's
# convention, what papers report); the AUROC of all classes' scores pooled has its own key. The
# keys only ae_lab/metrics.py writes (`test/image_auroc_pooled`, `test/f1_*`,
# `test/pixel_auroc/<class>`, `test/aupro/<class>`) are spelled out there.
TEST_IMAGE_AUROC = "test/image_auroc"


def image_auroc_key(category: str | None = None, defect: str | None = None) -> str:
    """`test/image_auroc`, `test/image_auroc/<class>` or `test/image_auroc/<class>/<defect>`."""
    parts = [TEST_IMAGE_AUROC, category, defect]
    return "/".join(p for p in parts if p)


# Columns of the per-image score table (`test/scores`), shared with the analysis.
SCORE_COLUMNS = ("path", "category", "defect", "label", "score", "l1", "l2", "ssim", "has_mask")
