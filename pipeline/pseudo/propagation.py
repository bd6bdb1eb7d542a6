"""Label propagation over a kNN graph of the labeled and pool images (Zhou et al. 2004, "Learning with local
and global consistency"; Iscen et al. 2019, "Label propagation for deep semi-supervised learning").

The teacher is a classifier fitted to a handful of labels; propagation reads the labels through the geometry
of the whole pool instead: a pool image takes the label of the labeled images it is connected to by chains of
near neighbours. With 4 labels per class it labels the pool 4 to 5 points more accurately than the teacher in
round 1, and its confident half is more precise (docs/pseudo_label_benchmark.md)."""

from __future__ import annotations

import numpy as np
import torch

from pipeline.pseudo.neighbours import nearest_neighbours


def knn_affinity(features: torch.Tensor, k: int, gamma: float, exact_max: int) -> torch.Tensor:
    """The symmetric normalized affinity of a kNN graph, sparse (N, N):

        A_ij = [cos(v_i, v_j)]_+ ^ gamma   for j among the k nearest neighbours of i (i itself excluded)
        W = A + A^T,   W_norm = D^-1/2 W D^-1/2,   D = diag(W 1)

    Args:
        features: (N, d) image features, any scale (compared by cosine).
        k: neighbours per image (k < N).
        gamma: power that sharpens the similarities (Iscen et al. use 3).
        exact_max: up to this many images the neighbours are exact (time N^2); beyond, an inverted-file
            search finds most of them in near-linear time (pipeline.pseudo.neighbours).
    """
    x = torch.nn.functional.normalize(features.float(), dim=1)
    n = len(x)
    top, cols = nearest_neighbours(x, k, exact_max)
    values = top.clamp_min(0).flatten() ** gamma
    del top
    indices, values = symmetric_edges(cols, values)
    del cols
    d_inv_sqrt = torch.zeros(n).index_add_(0, indices[0], values).clamp_min(1e-12).rsqrt()
    values = values * d_inv_sqrt[indices[0]] * d_inv_sqrt[indices[1]]
    return torch.sparse_coo_tensor(indices, values, (n, n), check_invariants=True, is_coalesced=True)


def symmetric_edges(cols: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The edges of W = A + A^T, where A holds row i's `values` (N*k,) at its k distinct neighbours `cols`
    (N, k; i itself excluded): (2, E) indices, row-major sorted and unique (a coalesced sparse tensor's), and
    their values, an edge in both lists (j among i's neighbours and i among j's) with the sum of both.

    Each edge i -> j and its reverse j -> i get the key i * N + j; one sort of the keys puts them in
    coalesced order, and equal keys are adjacent. The result is the same to the bit as coalescing a sparse
    tensor of both directions (a + b = b + a), in about two thirds of its peak memory and a fifth of its time
    at a million images (docs/scale.md)."""
    n, k = cols.shape
    m = n * k
    rows = torch.arange(n).repeat_interleave(k)
    key = torch.empty(2 * m, dtype=torch.long)
    key[:m].copy_(rows).mul_(n).add_(cols.flatten())
    key[m:].copy_(cols.flatten()).mul_(n).add_(rows)
    del rows
    key, order = torch.sort(key)
    values = torch.cat([values, values])[order]
    del order
    first = torch.ones(len(key), dtype=torch.bool)  # the first of equal keys
    torch.ne(key[1:], key[:-1], out=first[1:])
    second = ~first[1:]  # key i + 1 equals key i
    assert not bool((second[1:] & second[:-1]).any()), "an edge listed three times: neighbours not distinct"
    values[:-1][second] += values[1:][second]
    key, values = key[first], values[first]
    del first, second
    indices = torch.empty(2, len(key), dtype=torch.long)
    torch.div(key, n, rounding_mode="floor", out=indices[0])
    torch.remainder(key, n, out=indices[1])
    return indices, values


def conjugate_gradient(matvec, b: torch.Tensor, iterations: int, tolerance: float = 1e-6) -> torch.Tensor:
    """Solve M z = b for a symmetric positive definite M, column by column at once (b: (N, C)), by conjugate
    gradient: at most `iterations` steps, stopping when every column's residual norm is under `tolerance`
    times its b's norm."""
    z = torch.zeros_like(b)
    r = b.clone()
    p = r.clone()
    rr = (r * r).sum(dim=0)  # (C,)
    stop = tolerance**2 * (b * b).sum(dim=0)
    for _ in range(iterations):
        if bool((rr <= stop).all()):
            break
        mp = matvec(p)
        step = rr / (p * mp).sum(dim=0).clamp_min(1e-30)
        z = z + step * p
        r = r - step * mp
        rr_next = (r * r).sum(dim=0)
        p = r + (rr_next / rr.clamp_min(1e-30)) * p
        rr = rr_next
    return z


def seed_labels(labels: np.ndarray, num_classes: int, n_nodes: int) -> torch.Tensor:
    """Y (n_nodes, C): Y_ic = 1 / |L_c| for the i-th of the first len(labels) nodes, of class c; else 0."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float32)
    y = torch.zeros(n_nodes, num_classes)
    y[torch.arange(len(labels)), torch.from_numpy(labels)] = torch.from_numpy(1.0 / counts[labels])
    return y


def propagate(graph: torch.Tensor, y: torch.Tensor, alpha: float, iterations: int) -> torch.Tensor:
    """Z = (I - alpha W_norm)^-1 Y by conjugate gradient, every column of Y (N, m) at once, clamped at 0."""
    assert 0 < alpha < 1, f"alpha must be in (0, 1), got {alpha}"
    return conjugate_gradient(lambda v: v - alpha * torch.sparse.mm(graph, v), y, iterations).clamp_min(0)


def label_propagation(
    labeled_features: np.ndarray,
    labels: np.ndarray,
    pool_features: np.ndarray,
    num_classes: int,
    k: int,
    alpha: float,
    exact_max: int,
    gamma: float = 3.0,
    iterations: int = 20,
) -> np.ndarray:
    """Class probabilities (N_pool, C) of the pool by label propagation over the kNN graph of labeled + pool
    images (Zhou et al. 2004; Iscen et al. 2019, eqs. 9-11):

        Z = (I - alpha W_norm)^-1 Y,   Y_ic = 1 / |L_c| for a labeled image i of class c, else 0
        Z_ic <- Z_ic / sum_j Z_jc   over the pool: class mass normalization (Zhu et al. 2003), so a class
                                    with a well-connected labeled image does not flood the graph
        P_i = Z_i / sum_c Z_ic

    solved by conjugate gradient (`iterations` steps). An image with no path to any labeled image gets the
    uniform distribution.

    Args:
        labeled_features: (L, d) features of the labeled images; labels: (L,) their class indices.
        pool_features: (N, d) features of the pool images, in the same space.
        k, gamma, exact_max: the graph (knn_affinity); alpha in (0, 1): how far labels spread (Zhou et al.:
            0.99).
    """
    graph = _graph(labeled_features, labels, pool_features, k, gamma, exact_max)
    z = propagate(graph, seed_labels(labels, num_classes, graph.shape[0]), alpha, iterations)[len(labels) :]
    z = z / z.sum(dim=0, keepdim=True).clamp_min(1e-12)
    total = z.sum(dim=1, keepdim=True)
    probs = torch.where(total > 0, z / total.clamp_min(1e-30), torch.full_like(z, 1.0 / num_classes))
    return probs.numpy().astype(np.float32)


def label_mass_scores(
    labeled_features: np.ndarray,
    labels: np.ndarray,
    pool_features: np.ndarray,
    num_classes: int,
    folds: np.ndarray,
    k: int,
    alpha: float,
    exact_max: int,
    gamma: float = 3.0,
    iterations: int = 20,
) -> tuple[np.ndarray, np.ndarray]:
    """An OOD score (higher = more out of distribution): how little label mass reaches an image along the
    kNN graph of labeled + pool images,

        s_i = -log sum_c Z_ic,   Z = (I - alpha W_norm)^-1 Y   (label_propagation before any normalization)

    Z's row mass is a personalized PageRank from the labeled images (Zhou et al. 2004 rank by it): it decays
    along chains of near neighbours, so a cluster of the pool that no labeled image reaches, a class nobody
    labeled, gets little of it, however close its images are to one labeled image (which is all a kNN
    distance sees). An image with no path to a labeled one scores -log(1e-30) = 69.

    Returns the pool's scores (N_pool,) and held-out scores of the labeled images (L,), cross-fitted: image i
    of fold f scores by the mass from the labels of the other folds (`folds`: (L,) fold indices). One graph,
    one conjugate-gradient solve for every fold's Y at once.
    """
    graph = _graph(labeled_features, labels, pool_features, k, gamma, exact_max)
    n = graph.shape[0]
    fold_ids = np.unique(folds)
    columns = [seed_labels(labels, num_classes, n)]
    for fold in fold_ids:  # the other folds' labels as sources (their classes' mass stays 1 each)
        kept = np.flatnonzero(folds != fold)
        y = seed_labels(labels[kept], num_classes, len(kept))
        columns.append(torch.zeros(n, num_classes).index_copy_(0, torch.from_numpy(kept), y))
    mass = propagate(graph, torch.cat(columns, dim=1), alpha, iterations).view(n, -1, num_classes).sum(dim=2)
    scores = -torch.log(mass.clamp_min(1e-30)).numpy()
    held_out = np.empty(len(labels))
    for column, fold in enumerate(fold_ids, start=1):
        held_out[folds == fold] = scores[: len(labels)][folds == fold, column]
    return scores[len(labels) :, 0], held_out


def _graph(
    labeled_features: np.ndarray,
    labels: np.ndarray,
    pool_features: np.ndarray,
    k: int,
    gamma: float,
    exact_max: int,
) -> torch.Tensor:
    """knn_affinity of the labeled images (first) and the pool's, after checking that they fit together; at
    most k = the pool's size neighbours a node."""
    assert labeled_features.shape[1] == pool_features.shape[1], "labeled and pool features differ in width"
    assert len(labels) == len(labeled_features), f"{len(labels)} labels for {len(labeled_features)} images"
    features = torch.from_numpy(np.concatenate([labeled_features, pool_features])).float()
    return knn_affinity(features, min(k, len(pool_features)), gamma, exact_max)
