"""Clustering loss: SwAV's swapped prediction with Sinkhorn-Knopp codes."""

from __future__ import annotations

import torch
import torch.nn.functional as F


@torch.no_grad()
def sinkhorn_knopp(scores: torch.Tensor, epsilon: float = 0.05, iterations: int = 3) -> torch.Tensor:
    """Soft codes Q for a batch (Caron et al. 2020, eq. 3; Cuturi 2013): the transport plan from B samples
    to K prototypes with equal mass per prototype, found by alternating row and column normalization of
    exp(scores / epsilon). Returns (B, K) codes whose rows sum to 1 and whose columns each sum to B / K.

    Args:
        scores: (B, K) similarities between normalized embeddings and normalized prototypes.
    """
    q = torch.exp((scores - scores.max()) / epsilon).T  # (K, B); shift for stability, cancels in the ratios
    q /= q.sum()
    k, b = q.shape
    for _ in range(iterations):
        q /= q.sum(dim=1, keepdim=True)  # each prototype gets mass 1/K
        q /= k
        q /= q.sum(dim=0, keepdim=True)  # each sample gets mass 1/B
        q /= b
    return (q * b).T  # (B, K), rows sum to 1


def swav_loss(scores1: torch.Tensor, scores2: torch.Tensor, temperature: float = 0.1, epsilon: float = 0.05,
              iterations: int = 3) -> torch.Tensor:  # fmt: skip
    """SwAV's swapped prediction (Caron et al. 2020, eq. 1-2):

        q = sinkhorn(scores),  p = softmax(scores / t)
        L = (1/2N) sum_n [ -sum_k q2_nk log p1_nk  -  sum_k q1_nk log p2_nk ]

    Each view predicts the code of the other. Codes carry no gradient.

    Args:
        scores1, scores2: (N, K) prototype scores z.C of the two views (embeddings and prototypes normalized).
    """
    assert scores1.shape == scores2.shape, f"{scores1.shape} vs {scores2.shape}"
    q1, q2 = sinkhorn_knopp(scores1, epsilon, iterations), sinkhorn_knopp(scores2, epsilon, iterations)
    log_p1, log_p2 = F.log_softmax(scores1 / temperature, dim=1), F.log_softmax(scores2 / temperature, dim=1)
    return -0.5 * ((q2 * log_p1).sum(dim=1).mean() + (q1 * log_p2).sum(dim=1).mean())
