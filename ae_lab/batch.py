"""The data contract: what a loader yields (`Batch`) and what the module's steps return
(`Predictions`), read alike by the module, the media callback and the notebook."""

from dataclasses import dataclass, fields, replace

import pandas as pd
from torch import Tensor


@dataclass
class Batch:
    """B images of one split. Lightning moves the tensors to the device (dataclasses are
    collections to it); the lists stay on the host."""

    image: Tensor  # float32 [B, 3, S, S] in [0, 1]
    label: Tensor  # long [B]: 0 good, 1 defective
    mask: Tensor  # float32 [B, 1, S, S], 1 on the defect (zeros for good images)
    has_mask: Tensor  # bool [B]: a ground-truth mask exists (some defective images lack one)
    index: Tensor  # long [B]: the row of each image in the split's table
    category: list[str]
    defect: list[str]  # "good" or the defect type
    path: list[str]

    def __len__(self) -> int:
        return len(self.image)

    def pin_memory(self) -> "Batch":
        """Called by the DataLoader with `pin_memory=True` (GPU runs)."""
        pinned = {f.name: getattr(self, f.name) for f in fields(self)}
        pinned = {k: v.pin_memory() for k, v in pinned.items() if isinstance(v, Tensor)}
        return replace(self, **pinned)


@dataclass
class Predictions:
    """What one validation or test batch produced, computed once by the module."""

    recon: Tensor  # [B, 3, S, S] in [0, 1]
    z: Tensor  # [B, D] latent codes (a VAE's posterior mean)
    anomaly_map: Tensor | None = None  # test: [B, 1, S, S], >= 0, higher = more anomalous
    # test: one row per image, indexed by its row in the split's table: path, category, defect,
    # label, score, the raw errors l1/l2/ssim, has_mask, and `loss` (the run's own loss)
    scores: pd.DataFrame | None = None
