"""Latent codes of a dataset and their 2-D t-SNE embedding, as a table (`figures.interactive`
draws it for W&B, `figures.static` for the report)."""

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.manifold import TSNE
from threadpoolctl import threadpool_limits
from torch import nn

META_COLUMNS = ("index", "path", "category", "defect", "label")


@torch.no_grad()
def collect_latents(
    net: nn.Module, batches: Iterable[dict[str, Any]], device: torch.device | str = "cpu"
) -> tuple[np.ndarray, pd.DataFrame]:
    """Encode every batch: returns z [N, latent_dim] (float32) and one metadata row per image.

    `batches` yields the datamodule's dicts (`image`, `index`, `path`, `category`, `defect`, `label`).
    """
    codes, meta = [], []
    for batch in batches:
        z = net.encode(batch["image"].to(device))
        codes.append(z.flatten(1).float().cpu().numpy())
        meta.append(latent_meta(batch))
    if not codes:
        return np.zeros((0, 0), np.float32), pd.DataFrame(columns=list(META_COLUMNS))
    return np.concatenate(codes), pd.concat(meta, ignore_index=True)


def latent_meta(batch: dict[str, Any]) -> pd.DataFrame:
    """The per-image metadata of one batch as a DataFrame with columns META_COLUMNS."""
    return pd.DataFrame(
        {
            "index": batch["index"].cpu().numpy(),
            "path": list(batch["path"]),
            "category": list(batch["category"]),
            "defect": list(batch["defect"]),
            "label": batch["label"].cpu().numpy().astype(int),
        }
    )


def tsne_perplexity(n: int) -> float:
    """30 for large sets; for small ones (N-1)/3 so each point still has ~3x perplexity neighbours."""
    return float(min(30.0, (n - 1) / 3.0))


def tsne_2d(z: np.ndarray, seed: int = 0) -> np.ndarray:
    """z [N, D] -> [N, 2] t-SNE coordinates (PCA init, fixed seed, so reruns give the same map).

    With fewer than 4 points t-SNE is undefined (perplexity must be >= 1 and < N); the first two
    principal components are returned instead.
    """
    n = len(z)
    if n == 0:
        return np.zeros((0, 2))
    z = np.asarray(z, dtype=np.float64).reshape(n, -1)
    if n < 4:
        centred = z - z.mean(axis=0, keepdims=True)
        if not centred.any():
            return np.zeros((n, 2))
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        coords = centred @ vt[:2].T
        return np.pad(coords, ((0, 0), (0, 2 - coords.shape[1])))
    tsne = TSNE(n_components=2, perplexity=tsne_perplexity(n), init="pca", random_state=seed)
    # One thread: sklearn's OpenMP gradient loop spin-waits, and next to a training process (or
    # parallel sweep jobs) more threads made 500 points take 80 s instead of 6 s on 2 busy cores.
    with threadpool_limits(limits=1):
        return tsne.fit_transform(z)


def tsne_table(coords: np.ndarray, meta: pd.DataFrame) -> pd.DataFrame:
    """Columns x, y plus the metadata (category, defect, label, path) — what the W&B table shows."""
    return pd.DataFrame(
        {
            "x": coords[:, 0].astype(float),
            "y": coords[:, 1].astype(float),
            "category": meta["category"].to_numpy(),
            "defect": meta["defect"].to_numpy(),
            "label": meta["label"].to_numpy().astype(int),
            "path": meta["path"].to_numpy(),
        }
    )
