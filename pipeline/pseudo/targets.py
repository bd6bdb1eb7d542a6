"""The student's unlabeled training set, read from a round's pseudo-label table."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


@dataclass(frozen=True)
class PseudoLabeled:
    """Unlabeled images that passed the OOD filter, with their targets (weight 0 where not accepted)."""

    index: np.ndarray  # (M,) store rows
    targets: np.ndarray  # (M, C) soft or one-hot pseudo-labels
    weights: np.ndarray  # (M,) confidence weights, 0 for rejected-as-unconfident
    ood_weights: np.ndarray | None = None  # (M,) the OOD filter's soft weight; None: 1 (a hard filter)


TRAINING_COLUMNS = [
    "index",
    "pseudo_label",
    "soft_label",
    "weight",
    "copies",
    "ood_weight",
    "in_distribution",
]


def read_training_table(path: str | Path) -> pd.DataFrame:
    """The columns of a round's table that `training_targets` uses: not the hashes, paths and reasons, which
    for a pool of a million images would take hundreds of MB for nothing (docs/scale.md). The soft labels
    stay one Arrow column rather than becoming a numpy array per image."""
    table = pq.read_table(path, columns=TRAINING_COLUMNS)
    return table.to_pandas(types_mapper=lambda t: pd.ArrowDtype(t) if pa.types.is_list(t) else None)


def soft_labels(column: pd.Series, num_classes: int) -> np.ndarray:
    """(N, C) targets, in the stored float type, from a column of per-image probability lists (Arrow-backed,
    or numpy arrays). A missing value stays NaN, for the student's finite-loss check to name."""
    if len(column) == 0:
        return np.zeros((0, num_classes), np.float32)
    if isinstance(column.dtype, pd.ArrowDtype):
        flat = pa.array(column).flatten().to_numpy(zero_copy_only=False)  # a null (NaN in parquet) -> NaN
        return flat.reshape(len(column), num_classes)
    return np.stack(column.to_numpy())


def training_targets(table: pd.DataFrame, classes: list[str], hard: bool) -> PseudoLabeled:
    """The student's unlabeled training set: every image that passed the OOD filter, with its target
    (the teacher's soft label, or one-hot when `hard`) and weight (0 where not accepted, so it only counts
    in the entropy term). An image with `copies` > 1 (class-balanced duplication) appears that many times."""
    in_distribution = table[table["in_distribution"]]
    pool = in_distribution.loc[in_distribution.index.repeat(in_distribution["copies"].clip(lower=1))]
    if hard:
        targets = np.eye(len(classes))[
            pool["pseudo_label"].map({c: i for i, c in enumerate(classes)}).to_numpy()
        ]
    else:
        targets = soft_labels(pool["soft_label"], len(classes))
    return PseudoLabeled(
        pool["index"].to_numpy(np.int64), targets, pool["weight"].to_numpy(), pool["ood_weight"].to_numpy()
    )
