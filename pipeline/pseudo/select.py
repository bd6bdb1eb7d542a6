"""Accepting and weighting pseudo-labels: functions of arrays, no model inside."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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
    accepted: np.ndarray  # (N,) bool
    weight: np.ndarray  # (N,) float, 0 where not accepted
    in_distribution: np.ndarray  # (N,) bool, passed the OOD filter
    reason: np.ndarray  # (N,) str: accepted | ood | low_confidence


def confidence_selection(
    probs: np.ndarray, threshold: float, in_distribution: np.ndarray, weighting: str
) -> Selection:
    """Accept a prediction when it passed the OOD filter and its confidence max_c p_c >= threshold.

    weighting: 'confidence' gives an accepted sample the weight max_c p_c, 'uniform' gives it 1.
    """
    assert probs.ndim == 2 and in_distribution.shape == probs.shape[:1]
    confidence = probs.max(axis=1)
    pseudo_label = probs.argmax(axis=1)
    confident = confidence >= threshold
    accepted = confident & in_distribution
    if weighting == "confidence":
        weight = np.where(accepted, confidence, 0.0)
    elif weighting == "uniform":
        weight = accepted.astype(np.float64)
    else:
        raise ValueError(f"unknown weighting '{weighting}' (expected confidence or uniform)")
    reason = np.where(~in_distribution, "ood", np.where(confident, "accepted", "low_confidence"))
    return Selection(pseudo_label, confidence, accepted, weight, in_distribution, reason)
