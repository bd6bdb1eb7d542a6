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


def info_nce(query: torch.Tensor, key: torch.Tensor, queue: torch.Tensor, temperature: float) -> torch.Tensor:
    """InfoNCE with a queue of negatives, as in MoCo (He et al. 2020, eq. 1) and MoCo v2 (Chen et al. 2020).

    With q, k and the queue rows L2-normalized,

        L = -(1/N) sum_n log( exp(q_n.k_n / t) / ( exp(q_n.k_n / t) + sum_m exp(q_n.queue_m / t) ) )

    The key comes from the momentum encoder and carries no gradient (the caller detaches it).

    Args:
        query: (N, D) projections of the query views.
        key: (N, D) momentum-encoder projections of the key views (positives).
        queue: (M, D) earlier keys (negatives).
        temperature: t > 0.
    """
    assert query.shape == key.shape and query.ndim == 2, f"query {query.shape} vs key {key.shape}"
    assert queue.ndim == 2 and queue.shape[1] == query.shape[1], (
        f"queue {queue.shape} vs dim {query.shape[1]}"
    )
    q, k, negatives = F.normalize(query, dim=1), F.normalize(key, dim=1), F.normalize(queue, dim=1)
    positive = (q * k).sum(dim=1, keepdim=True)  # (N, 1)
    negative = q @ negatives.T  # (N, M)
    logits = torch.cat([positive, negative], dim=1) / temperature  # (N, 1 + M)
    return F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long, device=q.device))
