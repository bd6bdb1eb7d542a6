"""Accepting and weighting pseudo-labels: functions of arrays, no model inside.

The pipeline labels the whole unlabeled pool at once, between two training runs, so the running statistics
that FlexMatch, FreeMatch and SoftMatch keep over training batches (EMAs, per-sample prediction memories)
become plain statistics of the pool's predictions. Every statistic is taken over the images that passed the
OOD filter: out-of-distribution images neither receive a pseudo-label nor move a threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SELECTION_MODES = ("threshold", "softmatch", "flexmatch", "freematch", "class_balanced")


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax(logits / T), computed stably. (N, C) -> (N, C)."""
    z = logits / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class Selection:
    pseudo_label: np.ndarray  # (N,) argmax class
    confidence: np.ndarray  # (N,) max probability
    threshold: np.ndarray  # (N,) the confidence threshold that applied to the sample's predicted class
    accepted: np.ndarray  # (N,) bool
    weight: np.ndarray  # (N,) float, 0 where not accepted
    copies: np.ndarray  # (N,) int, times the sample enters the student's training set (0 = not at all)
    in_distribution: np.ndarray  # (N,) bool, passed the OOD filter
    reason: np.ndarray  # (N,) str: accepted | ood | low_confidence | over_quota


def flexmatch_thresholds(probs: np.ndarray, threshold: float, warmup: bool = True) -> np.ndarray:
    """FlexMatch's class-wise thresholds (Zhang et al. 2021, eq. 6, 7 and 11). (N, C) -> (C,).

        sigma(c) = #{n : argmax_k p_nk = c and max_k p_nk > tau}      learning effect of class c
        beta(c)  = sigma(c) / max(max_k sigma(k), N - sum_k sigma(k))  (warm-up; without it: / max_k sigma(k))
        T(c)     = M(beta(c)) * tau,  M(x) = x / (2 - x)               convex mapping

    A class the model has barely learned gets a low threshold, so its few confident predictions still count.
    """
    n, c = probs.shape
    confident = probs.max(axis=1) > threshold
    sigma = np.bincount(probs.argmax(axis=1)[confident], minlength=c).astype(np.float64)
    denominator = max(sigma.max(initial=0.0), n - sigma.sum()) if warmup else sigma.max(initial=0.0)
    beta = sigma / denominator if denominator > 0 else np.zeros(c)
    return beta / (2.0 - beta) * threshold


def freematch_thresholds(probs: np.ndarray) -> np.ndarray:
    """FreeMatch's self-adaptive class thresholds (Wang et al. 2023, eq. 5-8), one pass over the pool. (C,).

    tau      = (1/N) sum_n max_k p_nk                   global threshold (the EMA of mean confidence)
    ptilde_c = (1/N) sum_n p_nc                         local class expectation (the EMA of mean p)
    tau(c)   = ptilde_c / max_k ptilde_k * tau          MaxNorm(ptilde)_c * tau
    """
    if len(probs) == 0:
        return np.ones(probs.shape[1])
    tau = probs.max(axis=1).mean()
    ptilde = probs.mean(axis=0)
    return ptilde / ptilde.max() * tau


def softmatch_weights(confidence: np.ndarray, n_sigma: float = 2.0) -> np.ndarray:
    """SoftMatch's truncated Gaussian weight (Chen et al. 2023, eq. 7), lambda_max = 1. (N,) -> (N,).

        mu, s2 = mean and (unbiased) variance of the confidences max_k p_nk over the pool
        w(p)   = exp(-(max_k p_k - mu)^2 / (2 s2 / n_sigma^2))   if max_k p_k < mu
        w(p)   = 1                                                otherwise

    The paper's sigma is divided by n_sigma (2 in the authors' code): a sample 1 sigma below the mean
    confidence gets exp(-2) = 0.14. Every sample keeps a weight > 0: a soft version of a threshold.
    """
    if len(confidence) < 2:
        return np.ones_like(confidence, dtype=np.float64)
    mu, var = confidence.mean(), max(confidence.var(ddof=1), 1e-12)
    below = np.minimum(confidence - mu, 0.0)
    return np.exp(-(below**2) / (2 * var / n_sigma**2))


def class_balanced_copies(
    pseudo_label: np.ndarray, confidence: np.ndarray, eligible: np.ndarray, per_class: int, num_classes: int
) -> np.ndarray:
    """Noisy Student's data balancing (Xie et al. 2020, sec. 3). (N,) -> (N,) copies per sample.

    Per predicted class, among `eligible` samples: a class with more than `per_class` keeps its `per_class`
    most confident (the rest get 0 copies); a class with fewer is filled up to `per_class` by duplicating its
    samples, the most confident first (copies differ by at most 1 within a class). Ties in confidence are
    broken by position, so the result is deterministic.
    """
    copies = np.zeros(len(pseudo_label), dtype=np.int64)
    for c in range(num_classes):
        members = np.flatnonzero(eligible & (pseudo_label == c))
        if len(members) == 0 or per_class == 0:
            continue
        ranked = members[np.argsort(-confidence[members], kind="stable")]
        if len(ranked) >= per_class:
            copies[ranked[:per_class]] = 1
        else:
            base, extra = divmod(per_class, len(ranked))
            copies[ranked] = base
            copies[ranked[:extra]] += 1
    return copies


def select_pseudo_labels(
    probs: np.ndarray,
    in_distribution: np.ndarray,
    mode: str,
    threshold: float,
    weighting: str,
    per_class: int = 0,
    softmatch_n_sigma: float = 2.0,
) -> Selection:
    """Decide, for each pool image, whether its pseudo-label is used and with what weight.

    mode:
        threshold       accept when max_c p_c >= threshold (FixMatch's fixed threshold).
        flexmatch       accept when max_c p_c >= T(argmax): FlexMatch's class thresholds from `threshold`.
        freematch       accept when max_c p_c >= tau(argmax), FreeMatch's self-adaptive thresholds.
        softmatch       accept every in-distribution image; weight is SoftMatch's truncated Gaussian.
        class_balanced  accept when max_c p_c >= threshold, then keep / duplicate per predicted class up to
                        `per_class` images (0: pool size / number of classes), as in Noisy Student.
    weighting (all modes but softmatch): 'confidence' weighs an accepted sample by max_c p_c, 'uniform' by 1.
    """
    assert probs.ndim == 2 and in_distribution.shape == probs.shape[:1], (
        f"probs {probs.shape} vs in_distribution {in_distribution.shape}"
    )
    if mode not in SELECTION_MODES:
        raise ValueError(f"unknown pseudo-label mode '{mode}' (expected one of {', '.join(SELECTION_MODES)})")
    if weighting not in ("confidence", "uniform"):
        raise ValueError(f"unknown weighting '{weighting}' (expected confidence or uniform)")
    num_classes = probs.shape[1]
    confidence, pseudo_label = probs.max(axis=1), probs.argmax(axis=1)
    kept = probs[in_distribution]  # thresholds are statistics of the in-distribution pool only
    if mode == "flexmatch":
        class_threshold = flexmatch_thresholds(kept, threshold)
    elif mode == "freematch":
        class_threshold = freematch_thresholds(kept)
    elif mode == "softmatch":
        class_threshold = np.zeros(num_classes)
    else:
        class_threshold = np.full(num_classes, threshold)
    sample_threshold = class_threshold[pseudo_label]
    confident = confidence >= sample_threshold
    eligible = confident & in_distribution

    if mode == "class_balanced":
        quota = per_class or max(1, int(in_distribution.sum()) // num_classes)
        copies = class_balanced_copies(pseudo_label, confidence, eligible, quota, num_classes)
    else:
        copies = eligible.astype(np.int64)
    accepted = copies > 0

    if mode == "softmatch":
        weight = np.zeros(len(probs))
        weight[in_distribution] = softmatch_weights(confidence[in_distribution], softmatch_n_sigma)
    elif weighting == "confidence":
        weight = np.where(accepted, confidence, 0.0)
    else:
        weight = accepted.astype(np.float64)

    reason = np.where(
        ~in_distribution,
        "ood",
        np.where(~confident, "low_confidence", np.where(accepted, "accepted", "over_quota")),
    )
    return Selection(
        pseudo_label, confidence, sample_threshold, accepted, weight, copies, in_distribution, reason
    )
