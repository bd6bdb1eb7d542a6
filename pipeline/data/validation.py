"""The validation share of the labeled images, held out from training and used to choose models only; and
the folds of the labeled images for cross-fitting when there are too few of them to hold any out."""

from __future__ import annotations

import hashlib

import numpy as np

from pipeline.config.common import ValidationConfig
from pipeline.data.store import Split


def _rank_key(seed: int, sha256: str) -> str:
    return hashlib.sha256(f"{seed}:{sha256}".encode()).hexdigest()


def split_validation(labeled: Split, cfg: ValidationConfig, seed: int) -> tuple[Split, Split | None]:
    """(train, validation) from the labeled split: per class, the `cfg.per_class` images whose
    sha256(seed:content hash) ranks lowest are held out, when every class keeps at least
    `cfg.min_train_per_class` images to train on; otherwise (train = labeled, None).

    The choice depends on the images' contents and the seed only: adding labeled images later moves an
    image from validation to training only when a new one ranks below it, and file names or order do not
    matter."""
    classes, counts = np.unique(labeled.labels, return_counts=True)
    if cfg.per_class == 0 or len(classes) == 0 or counts.min() - cfg.per_class < cfg.min_train_per_class:
        return labeled, None
    held = np.zeros(len(labeled.index), dtype=bool)
    keys = np.array([_rank_key(seed, sha) for sha in labeled.sha256])
    for c in classes:
        members = np.flatnonzero(labeled.labels == c)
        held[members[np.argsort(keys[members], kind="stable")[: cfg.per_class]]] = True

    return labeled.subset(~held), labeled.subset(held)


def stratified_folds(labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """A fold number (0..folds-1) per sample, each class dealt round-robin over the folds in random order."""
    rng = np.random.default_rng(seed)
    fold = np.empty(len(labels), dtype=np.int64)
    offset = 0
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        fold[members] = (offset + np.arange(len(members))) % folds
        offset += len(members)  # the next class starts where this one stopped, so folds stay even
    return fold
