"""Redundancy-reduction losses: Barlow Twins and VICReg."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _off_diagonal(m: torch.Tensor) -> torch.Tensor:
    n = m.shape[0]
    return m.flatten()[:-1].view(n - 1, n + 1)[:, 1:].flatten()  # every entry but the diagonal


def barlow_twins_loss(z1: torch.Tensor, z2: torch.Tensor, lambd: float = 0.0051) -> torch.Tensor:
    """Barlow Twins (Zbontar et al. 2021, eq. 1-2):

        C_ij = sum_n z1n_i z2n_j / N,   z1n, z2n = z1, z2 standardized per dimension over the batch
        L = sum_i (1 - C_ii)^2 + lambda * sum_{i != j} C_ij^2

    0 exactly when the cross-correlation matrix is the identity: views agree, dimensions decorrelated.

    Args:
        z1, z2: (N, D) projections of the two views, N >= 2.
        lambd: weight of the redundancy-reduction (off-diagonal) term.
    """
    assert z1.shape == z2.shape and z1.ndim == 2 and z1.shape[0] > 1, f"{z1.shape} vs {z2.shape}"
    n = z1.shape[0]
    # Standardize as BatchNorm without affine parameters does (biased variance).
    z1n = (z1 - z1.mean(0)) / (z1.var(0, unbiased=False) + 1e-5).sqrt()
    z2n = (z2 - z2.mean(0)) / (z2.var(0, unbiased=False) + 1e-5).sqrt()
    c = z1n.T @ z2n / n  # (D, D)
    on_diag = (torch.diagonal(c) - 1).pow(2).sum()
    off_diag = _off_diagonal(c).pow(2).sum()
    return on_diag + lambd * off_diag


def vicreg_loss(
    z1: torch.Tensor,
    z2: torch.Tensor,
    sim_weight: float = 25.0,
    var_weight: float = 25.0,
    cov_weight: float = 1.0,
    gamma: float = 1.0,
    eps: float = 1e-4,
) -> torch.Tensor:
    """VICReg (Bardes et al. 2022, eq. 1-6):

        s(Z, Z') = mean_{n,j} (z_nj - z'_nj)^2                            invariance
        v(Z) = (1/D) sum_j max(0, gamma - sqrt(Var(z_.j) + eps))           variance (hinge on the std)
        c(Z) = (1/D) sum_{i != j} Cov(Z)_ij^2                             covariance
        L = sim_weight s + var_weight (v(Z) + v(Z'))/2 + cov_weight (c(Z) + c(Z'))

    as in the authors' code (the variance term averaged over the two branches).

    Args:
        z1, z2: (N, D) expander outputs of the two views, N >= 2.
    """
    assert z1.shape == z2.shape and z1.ndim == 2 and z1.shape[0] > 1, f"{z1.shape} vs {z2.shape}"
    n, d = z1.shape
    invariance = F.mse_loss(z1, z2)
    variance, covariance = z1.new_zeros(()), z1.new_zeros(())
    for z in (z1, z2):
        std = torch.sqrt(z.var(dim=0) + eps)
        variance = variance + F.relu(gamma - std).mean() / 2
        centered = z - z.mean(dim=0)
        cov = centered.T @ centered / (n - 1)  # (D, D)
        covariance = covariance + _off_diagonal(cov).pow(2).sum() / d
    return sim_weight * invariance + var_weight * variance + cov_weight * covariance
