"""Baselines that ignore the defect: one number per test image (brightness, contrast, noise, focus,
position of the object) and its image AUROC per class, good against defective.

A detector should beat them by seeing the defect. An AUROC far from 0.5 in either direction says
the good and defective test images differ beyond the defect (lighting, camera, session, pose): a
detector's AUROC may then partly measure that difference instead of the defect.
"""

import numpy as np
import pandas as pd
from scipy import ndimage

from ae_lab.data.table import load_image
from ae_lab.errors import AeLabError
from ae_lab.metrics import ALL, defect_aurocs

STATISTICS = ("mean_grey", "grey_std", "noise", "focus", "position")
NOISE_SIGMA = 2.0  # px: the blur whose residual is the image's fine-grained noise


def image_statistics(image: np.ndarray) -> dict[str, float]:
    """uint8 [H,W,3] -> mean grey, grey std, noise (std of the grey image minus its Gaussian
    blur), focus (variance of its Laplacian), position (pixels from the image centre to the
    object's centroid: every pixel weighted by how far its grey is from the background's, the
    median of the image border)."""
    grey = image.astype(np.float64).mean(axis=2)
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    weight = np.abs(grey - np.median(border))
    centre = (np.array(grey.shape) - 1) / 2
    centroid = np.array(ndimage.center_of_mass(weight)) if weight.any() else centre
    return {
        "mean_grey": float(grey.mean()),
        "grey_std": float(grey.std()),
        "noise": float((grey - ndimage.gaussian_filter(grey, NOISE_SIGMA)).std()),
        "focus": float(ndimage.laplace(grey).var()),
        "position": float(np.hypot(*(centroid - centre))),
    }


def baseline_aurocs(scores: pd.DataFrame, image_size: int) -> tuple[pd.DataFrame, list[str]]:
    """Per class of the test images in `scores` (path, category, label; a path counted once):
    category, n_good, n_defect and the image AUROC of each statistic, the images read with
    `load_image` at `image_size`. Also what was left out: images that cannot be read here (runs
    trained on another machine)."""
    images = scores.drop_duplicates("path")
    rows, missing = [], []
    columns = ["path", "category", "defect", "label"]
    for path, *row in images[columns].itertuples(index=False):
        try:
            rows.append((*row, *image_statistics(load_image(path, image_size)).values()))
        except AeLabError:
            missing.append(path)
    stats = pd.DataFrame(rows, columns=[*columns[1:], *STATISTICS])
    aurocs = {stat: defect_aurocs(stats, stat) for stat in STATISTICS}  # same rows for each
    table = aurocs[STATISTICS[0]][["category", "defect", "n_good", "n_defect"]]
    table = table.assign(**{stat: part["auroc"].to_numpy() for stat, part in aurocs.items()})
    # Per class, its good images against all its defective ones.
    table = table[table["defect"] == ALL].drop(columns="defect")
    problems = []
    if missing:
        problems.append(
            f"baselines: {len(missing)} of {len(images)} test images cannot be read here (e.g. "
            f"{missing[0]}) and are left out of analysis/baselines"
        )
    return table.reset_index(drop=True), problems
