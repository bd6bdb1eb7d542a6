"""Out-of-distribution scores (higher = more out of distribution) and their calibrated thresholds.

Five scores, each a function of arrays:
    msp          -max_c softmax(logits)_c                       (Hendrycks & Gimpel 2017)
    energy       -T logsumexp(logits / T)                       (Liu et al. 2020)
    mahalanobis  min_c (x - mu_c)^T S^-1 (x - mu_c), class-conditional Gaussians with a tied, shrunk
                 covariance S on L2-normalized features        (Lee et al. 2018)
    knn          1 - cos(x, k-th nearest labeled feature)       (Sun et al. 2022)
    propagation  -log of the label mass that reaches x along the kNN graph of labeled + pool images
                 (pipeline.pseudo.propagation.label_mass_scores; Zhou et al. 2004)

msp and energy are computed from a softmax-regression head fitted on the teacher's features of the labeled
images (see `ood_scores`). The threshold keeps a share `keep` of in-distribution images. Those scores must
come from labeled images the scorer has not seen, or they are optimistic (an image is its own nearest
neighbour; a classifier is confident on its training images). So they are held out: leave-one-out for knn,
and for the others cross-fitted: the labeled set is split into stratified folds, the scorer is fitted on the
other folds and scores the held-out one. From round 2 on, the teacher is a student whose encoder was trained
on the labeled images too, so its features of them stay somewhat optimistic.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from pipeline.data.validation import stratified_folds
from pipeline.metrics import fit_linear_head
from pipeline.pseudo.propagation import label_mass_scores

OOD_METHODS = ("msp", "energy", "mahalanobis", "knn", "propagation", "none")
EMBEDDING_METHODS = (
    "knn",
    "propagation",
)  # scored in the SSL embedding; the others in the teacher's features

# fit on (features, labels) of the training folds, return the scores of the held-out features
FoldScorer = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def _normalize(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def msp_score(logits: np.ndarray) -> np.ndarray:
    """Negative maximum softmax probability: -max_c softmax(logits)_c. (N, C) -> (N,)."""
    z = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    return -probs.max(axis=1)


def energy_score(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Free energy E(x) = -T log sum_c exp(f_c(x) / T) (Liu et al. 2020, eq. 5). (N, C) -> (N,).

    In-distribution inputs get low (very negative) energy; unlike the MSP it does not saturate at 1.
    """
    z = logits / temperature
    top = z.max(axis=1)
    return -temperature * (top + np.log(np.exp(z - top[:, None]).sum(axis=1)))


def fit_class_gaussians(
    features: np.ndarray, labels: np.ndarray, num_classes: int, shrinkage: float
) -> tuple[np.ndarray, np.ndarray]:
    """Class means (C, D) and the precision (D, D) of the tied covariance, on L2-normalized features.

        S = (1/N) sum_n (x_n - mu_{y_n})(x_n - mu_{y_n})^T
        S_shrunk = (1 - a) S + a (tr(S) / D) I          a = shrinkage, so S is invertible with N < D

    A class without samples gets a mean at infinity (it never is the nearest).
    """
    x = _normalize(features.astype(np.float64))
    d = x.shape[1]
    means = np.full((num_classes, d), np.inf)
    centered = np.zeros_like(x)
    for c in range(num_classes):
        members = labels == c
        if members.any():
            means[c] = x[members].mean(axis=0)
            centered[members] = x[members] - means[c]
    cov = centered.T @ centered / max(1, len(x))
    shrunk = (1 - shrinkage) * cov + shrinkage * max(np.trace(cov) / d, 1e-12) * np.eye(d)
    return means, np.linalg.inv(shrunk)


def mahalanobis_score(features: np.ndarray, means: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """min_c (x - mu_c)^T P (x - mu_c) on L2-normalized x (Lee et al. 2018, eq. 2). (N, D) -> (N,)."""
    x = _normalize(features.astype(np.float64))
    finite = np.isfinite(means).all(axis=1)
    diff = x[:, None, :] - means[None, finite, :]  # (N, C', D)
    return np.einsum("ncd,de,nce->nc", diff, precision, diff).min(axis=1)


def knn_distance(
    features: np.ndarray, reference: np.ndarray, k: int, exclude_self: bool = False, chunk: int = 4096
) -> np.ndarray:
    """Cosine distance from each row of `features` to its k-th nearest row of `reference` (Sun et al. 2022).

        score(x) = 1 - cos(x, r_(k)),  r_(k) the k-th most similar reference feature

    With exclude_self, `features` is `reference` itself and each row's own match is skipped (leave-one-out).
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


def threshold_interval(
    in_distribution_scores: np.ndarray, keep: float, seed: int, draws: int = 200, level: float = 0.9
) -> tuple[float, float]:
    """The `level` percentile-bootstrap interval of `calibrate_ood_threshold`: the threshold recomputed on
    `draws` resamples (with replacement, seeded) of the held-out scores; their (1 - level) / 2 and
    (1 + level) / 2 quantiles. Wide when the threshold rests on few scores (40 labels: a handful of the
    highest decide it)."""
    scores = np.asarray(in_distribution_scores, dtype=np.float64)
    if len(scores) == 0:
        raise ValueError("cannot bootstrap an OOD threshold without in-distribution scores")
    rng = np.random.default_rng(seed)
    thresholds = np.concatenate([
        np.quantile(scores[rng.integers(0, len(scores), (n, len(scores)))], keep, axis=1, method="higher")
        for n in np.diff(np.r_[0:draws:50, draws])  # 50 resamples at a time: memory stays small
    ])  # fmt: skip
    low, high = np.quantile(thresholds, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def cross_fitted_scores(
    features: np.ndarray, labels: np.ndarray, scorer: FoldScorer, folds: int, seed: int
) -> np.ndarray:
    """Held-out scores of every labeled sample: `scorer` fitted on the other folds scores each fold."""
    if len(labels) < 2:
        raise ValueError(f"held-out OOD calibration needs at least 2 labeled images, have {len(labels)}")
    fold = stratified_folds(labels, min(folds, len(labels)), seed)
    scores = np.empty(len(labels))
    for f in np.unique(fold):
        held_out = fold == f
        scores[held_out] = scorer(features[~held_out], labels[~held_out], features[held_out])
    return scores


def linear_head_logits(
    train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, num_classes: int, steps: int = 300
) -> np.ndarray:
    """Logits on `test_x` of a softmax-regression head fitted on (train_x, train_y), full-batch Adam.

    Stands in for the model's own head when calibrating logit scores on held-out labeled images.
    """
    x, y = torch.as_tensor(train_x, dtype=torch.float32), torch.as_tensor(train_y, dtype=torch.long)
    head = fit_linear_head(x, y, num_classes, steps, lr=0.05, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return head(torch.as_tensor(test_x, dtype=torch.float32)).numpy()


def ood_scores(
    method: str,
    pool_features: np.ndarray,
    labeled_features: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    k: int,
    shrinkage: float,
    folds: int,
    seed: int,
    graph_k: int,
    alpha: float,
    exact_max: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Scores of the pool and held-out scores of the labeled images, for one `method`.

    *_features: (N, D) the features the method works in (the teacher's encoder for msp / energy /
    mahalanobis, the SSL encoder for knn and propagation); graph_k, alpha, exact_max: propagation's graph.
    One scorer makes both sets of scores, so the threshold is in the units of the pool's: fitted on every
    labeled image for the pool, and on the other folds for each held-out fold. For msp and energy the scorer
    is a softmax-regression head on those features rather than the teacher's own head, which was trained on
    every labeled image (its scores on them are optimistic) with a recipe that cross-fitting could not repeat
    exactly.
    """
    if method == "knn":  # leave-one-out is exact and cheap here: each image skips only itself
        pool = knn_distance(pool_features, labeled_features, k)
        return pool, knn_distance(labeled_features, labeled_features, k, exclude_self=True)
    if method == "propagation":
        fold_of = stratified_folds(labels, folds, seed)
        return label_mass_scores(
            labeled_features, labels, pool_features, num_classes, fold_of, graph_k, alpha, exact_max
        )
    if method == "mahalanobis":

        def scorer(tx, ty, hx):
            return mahalanobis_score(hx, *fit_class_gaussians(tx, ty, num_classes, shrinkage))
    elif method in ("msp", "energy"):
        score = msp_score if method == "msp" else energy_score

        def scorer(tx, ty, hx):
            return score(linear_head_logits(tx, ty, hx, num_classes))
    else:
        raise ValueError(f"unknown OOD method '{method}' (expected one of {', '.join(OOD_METHODS)})")
    pool = scorer(labeled_features, labels, pool_features)
    return pool, cross_fitted_scores(labeled_features, labels, scorer, folds, seed)
