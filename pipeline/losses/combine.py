"""Rules for combining several losses on one encoder (the reconstruction + contrastive hybrid)."""

from __future__ import annotations

import torch


def uncertainty_weighting(losses: torch.Tensor, log_variances: torch.Tensor) -> torch.Tensor:
    """Learned uncertainty weighting (Kendall, Gal & Cipolla 2018, eq. 7, written with s = log sigma^2):

        L = sum_i exp(-s_i) L_i + s_i

    Each s_i is a learned scalar; a loss with large s_i (high uncertainty) is down-weighted, and the + s_i
    term stops every s_i from growing without bound. For fixed L_i the optimum is s_i = log L_i.

    Args:
        losses: (T,) the task losses L_i.
        log_variances: (T,) the learned s_i.
    """
    assert losses.shape == log_variances.shape, f"{losses.shape} vs {log_variances.shape}"
    return (torch.exp(-log_variances) * losses + log_variances).sum()
