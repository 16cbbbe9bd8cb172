"""Fixed, seeded choices of which images the media show, so every epoch and run shows the same ones."""

import zlib

import numpy as np
import pandas as pd


def _group_seed(seed: int, key: tuple) -> int:
    # Per-group seed from the group's name: adding a class does not change the picks of another.
    return (seed * 1_000_003 + zlib.crc32("/".join(map(str, key)).encode())) % 2**32


def _interleave(queues: list[list[int]]) -> list[int]:
    out: list[int] = []
    for i in range(max((len(q) for q in queues), default=0)):
        out += [q[i] for q in queues if i < len(q)]
    return out


def _ordered(table: pd.DataFrame, by: list[str], seed: int, path: tuple = ()) -> list[int]:
    if not by:
        rng = np.random.default_rng(_group_seed(seed, path))
        return list(table.index[rng.permutation(len(table))])
    groups = sorted(table.groupby(by[0], sort=True), key=lambda kv: kv[0])
    return _interleave([_ordered(rows, by[1:], seed, (*path, key)) for key, rows in groups])


def round_robin(table: pd.DataFrame, n: int, by: list[str], seed: int = 0) -> list[int]:
    """Up to `n` row labels of `table`, visiting the groups of `by[0]` in turn, and within each
    group the subgroups of `by[1]` in turn, and so on (e.g. class, then defect type).

    Rows inside a group are in a seeded random order; groups are visited in sorted order, so the
    result depends only on the table's content and `seed`.
    """
    if n <= 0 or table.empty:
        return []
    return _ordered(table, list(by), seed)[:n]


def select_val(table: pd.DataFrame, n: int, seed: int = 0) -> list[int]:
    """`n` validation rows covering every class round-robin, in display order."""
    return round_robin(table, n, ["category"], seed)


def select_test(table: pd.DataFrame, n: int, seed: int = 0) -> list[int]:
    """`n` test rows: half good (round-robin over classes), half defective (round-robin over
    classes, and within a class over its defect types); if one side runs short the other fills in. Ordered by class, good
    first, then defect type, so the W&B list reads class by class."""
    good, bad = table[table["label"] == 0], table[table["label"] == 1]
    n_bad = min(len(bad), n - min(len(good), n // 2))
    n_good = min(len(good), n - n_bad)
    rows = round_robin(good, n_good, ["category"], seed) + round_robin(
        bad, n_bad, ["category", "defect"], seed
    )
    ordered = table.loc[rows].sort_values(["category", "label", "defect"], kind="stable")
    return list(ordered.index)
