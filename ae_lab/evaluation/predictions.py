"""Test predictions: produced once by the test step, gathered over ranks, read by everything after.

The module's `test_step` returns one batch's predictions (what callbacks get as `outputs`) and
keeps a CPU copy; at the end of the test epoch `gather_predictions` joins them over every rank
into one `TestPredictions`, which `evaluation.metrics.evaluate` turns into metrics and the media
callback draws. Nothing re-runs the model after the test step.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from torch import Tensor

from ae_lab import keys

_TENSORS = ("index", "label", "score", "l1", "l2", "ssim", "has_mask", "map", "mask", "z")
_STRINGS = ("path", "category", "defect")


@dataclass
class TestPredictions:
    """The whole test set, each image once, in dataset `index` order (also under DDP)."""

    scores: pd.DataFrame  # one row per image, columns keys.SCORE_COLUMNS, index: dataset row
    maps: Tensor  # [N,1,H,W] float16 anomaly maps (CPU)
    masks: Tensor  # [N,1,H,W] bool ground-truth masks
    z: Tensor  # [N,D] float32 latent codes (the posterior mean for a VAE)


def batch_record(batch: dict[str, Any], predictions: dict[str, Tensor]) -> dict[str, Any]:
    """What the epoch end needs from one test batch, on the CPU."""
    return {
        "index": batch["index"].cpu(),
        "label": batch["label"].cpu(),
        "has_mask": batch["has_mask"].cpu(),
        "mask": batch["mask"].cpu().bool(),
        # float16 halves the memory of the stacked maps; ranking metrics don't need more.
        "map": predictions["map"].cpu().half(),
        "z": predictions["z"].float().cpu(),
        **{k: predictions[k].float().cpu() for k in ("score", "l1", "l2", "ssim")},
        **{k: list(batch[k]) for k in _STRINGS},
    }


def gather_predictions(
    records: list[dict[str, Any]], all_gather: Callable[[Tensor], Tensor]
) -> TestPredictions | None:
    """Join the batch records of every rank (`all_gather`: the LightningModule's) into one set."""
    if not records:
        return None
    tensors = {k: torch.cat([r[k] for r in records]) for k in _TENSORS}
    strings = {k: [s for r in records for s in r[k]] for k in _STRINGS}
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        tensors, strings = _gather_ranks(tensors, strings, all_gather)
    scores = pd.DataFrame(
        {
            **strings,
            "label": tensors["label"].numpy().astype(int),
            **{k: tensors[k].numpy() for k in ("score", "l1", "l2", "ssim")},
            "has_mask": tensors["has_mask"].numpy().astype(bool),
        },
        index=tensors["index"].numpy(),
    )[list(keys.SCORE_COLUMNS)]
    return TestPredictions(scores, tensors["map"], tensors["mask"], tensors["z"])


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's `obj` (a collective: all ranks must call it); `[obj]` in a single process."""
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def _gather_ranks(
    tensors: dict[str, Tensor], strings: dict[str, list[str]], all_gather: Callable
) -> tuple[dict[str, Tensor], dict[str, list[str]]]:
    """Every rank's outputs, each image once, in `index` order (the same on every rank).

    DistributedSampler pads the last rank with repeated images so that ranks get equal counts;
    the repeats are dropped by `index`. Ranks may still hold different counts (e.g. with
    `limit_test_batches`), so tensors are padded to the longest before `all_gather`.
    """
    sizes = [int(n) for n in all_gather(torch.tensor(len(tensors["index"]))).flatten()]
    gathered = {}
    for key, value in tensors.items():
        dtype = value.dtype
        value = value.to(torch.uint8) if dtype == torch.bool else value  # gloo has no bool
        pad = value.new_zeros((max(sizes) - len(value), *value.shape[1:]))
        full = all_gather(torch.cat([value, pad])).cpu()  # [world, n, ...]
        gathered[key] = torch.cat([full[r, :n] for r, n in enumerate(sizes)]).to(dtype)
    joined = {k: [s for rank in gather_objects(strings) for s in rank[k]] for k in strings}
    _, first = np.unique(gathered["index"].numpy(), return_index=True)  # sorted by index
    keep = torch.from_numpy(first)
    return (
        {k: v[keep] for k, v in gathered.items()},
        {k: [v[i] for i in first] for k, v in joined.items()},
    )
