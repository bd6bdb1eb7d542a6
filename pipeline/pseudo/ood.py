"""Out-of-distribution scores (higher = more out of distribution) and their calibrated thresholds."""

from __future__ import annotations

import numpy as np


def _normalize(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def knn_distance(
    features: np.ndarray, reference: np.ndarray, k: int, exclude_self: bool = False, chunk: int = 4096
) -> np.ndarray:
    """Cosine distance from each row of `features` to its k-th nearest row of `reference` (Sun et al. 2022).

        score(x) = 1 - cos(x, r_(k)),  r_(k) the k-th most similar reference feature

    With exclude_self, `features` is `reference` itself and each row's own match is skipped (leave-one-out),
    which is how the in-distribution scores for calibration are computed.
    """
    ref = _normalize(reference.astype(np.float64))
    k_eff = k + 1 if exclude_self else k
    if k_eff > len(ref):
        raise ValueError(f"kNN OOD score needs at least {k_eff} reference images, have {len(ref)}")
    out = np.empty(len(features))
    for start in range(0, len(features), chunk):
        sim = _normalize(features[start : start + chunk].astype(np.float64)) @ ref.T  # (n, R)
        kth = -np.partition(-sim, k_eff - 1, axis=1)[:, k_eff - 1]
        out[start : start + chunk] = 1.0 - kth
    return out


def calibrate_ood_threshold(in_distribution_scores: np.ndarray, keep: float) -> float:
    """The score below which a share `keep` of in-distribution samples falls (their `keep` quantile)."""
    if len(in_distribution_scores) == 0:
        raise ValueError("cannot calibrate an OOD threshold without in-distribution scores")
    return float(np.quantile(in_distribution_scores, keep, method="higher"))


def knn_ood(
    pool_features: np.ndarray, labeled_features: np.ndarray, k: int, keep: float
) -> tuple[np.ndarray, float]:
    """kNN OOD scores of the pool; threshold keeping a share `keep` of labeled images (leave-one-out)."""
    threshold = calibrate_ood_threshold(
        knn_distance(labeled_features, labeled_features, k, exclude_self=True), keep
    )
    return knn_distance(pool_features, labeled_features, k), threshold
