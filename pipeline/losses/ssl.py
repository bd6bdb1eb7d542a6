"""Self-supervised losses."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent, the normalized temperature-scaled cross-entropy of SimCLR (Chen et al. 2020, eq. 1).

    With the 2N embeddings z = [z1; z2] L2-normalized and sim(u, v) = u.v, the pair (i, j) of two views of
    the same image has

        l(i, j) = -log( exp(sim(z_i, z_j) / t) / sum_{k != i} exp(sim(z_i, z_k) / t) )

    and the loss averages l over all 2N ordered positive pairs.

    Args:
        z1, z2: (N, D) projections of the two views; row n of z1 and z2 come from the same image.
        temperature: t > 0.
    Returns:
        scalar loss.
    """
    assert z1.shape == z2.shape and z1.ndim == 2, f"expected two (N, D) tensors, got {z1.shape}, {z2.shape}"
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)  # (2N, D)
    logits = z @ z.T / temperature  # (2N, 2N)
    logits = logits.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    positives = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)  # (2N,)
    return F.cross_entropy(logits, positives)
