"""Semi-supervised losses: pseudo-label cross-entropy and entropy minimization."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def weighted_soft_cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """Confidence-weighted cross-entropy against soft (or one-hot) pseudo-labels, masked mean over the batch.

        L = (1 / B) * sum_b w_b * ( - sum_c q_bc * log softmax(logits_b)_c )

    Rejected samples carry w_b = 0, so, as in FixMatch (Sohn et al. 2020, eq. 4), the mean is over the whole
    batch of B, not over accepted samples only: the loss shrinks when fewer pseudo-labels pass.

    Args:
        logits: (B, C) student logits.
        targets: (B, C) target distributions q (rows sum to 1; one-hot for hard labels).
        weights: (B,) per-sample weights w >= 0.
    """
    assert logits.shape == targets.shape, f"logits {logits.shape} vs targets {targets.shape}"
    assert weights.shape == logits.shape[:1], f"weights {weights.shape} vs batch {logits.shape[0]}"
    per_sample = -(targets * F.log_softmax(logits, dim=1)).sum(dim=1)  # (B,)
    return (weights * per_sample).mean()


def entropy_minimization(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean prediction entropy over masked samples (Grandvalet & Bengio 2005).

        H = (1 / sum_b m_b) * sum_b m_b * ( - sum_c p_bc * log p_bc ),   p_b = softmax(logits_b)

    Minimizing H pushes decision boundaries away from dense regions of unlabeled data. Returns 0 when the
    mask is empty.

    Args:
        logits: (B, C) logits on unlabeled images.
        mask: (B,) 1 for samples that count (e.g. passed the OOD filter), 0 otherwise.
    """
    assert mask.shape == logits.shape[:1], f"mask {mask.shape} vs batch {logits.shape[0]}"
    log_p = F.log_softmax(logits, dim=1)
    per_sample = -(log_p.exp() * log_p).sum(dim=1)  # (B,)
    mask = mask.to(per_sample.dtype)
    return (mask * per_sample).sum() / mask.sum().clamp_min(1.0)
