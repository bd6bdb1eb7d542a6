"""Label propagation: the closed form it solves, labels spreading along a chain that the nearest labeled image
gets wrong, its place in the pool's probabilities, and the label mass as an OOD score."""

import numpy as np
import torch

from pipeline.config.pseudolabel import PropagationConfig
from pipeline.pseudo.ood import knn_distance
from pipeline.pseudo.pool import propagate_pool
from pipeline.pseudo.propagation import (
    conjugate_gradient,
    knn_affinity,
    label_mass_scores,
    label_propagation,
    symmetric_edges,
)


def test_knn_affinity_is_symmetric_normalized_and_skips_self_loops():
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.normal(size=(30, 5))).float()
    w = knn_affinity(x, k=4, gamma=3.0, exact_max=30).to_dense()
    assert torch.allclose(w, w.T)
    assert torch.all(w.diagonal() == 0)
    # D^-1/2 W D^-1/2 of the unnormalized graph: rebuild it by hand from the cosine similarities.
    xn = torch.nn.functional.normalize(x, dim=1)
    sims = xn @ xn.T
    sims.fill_diagonal_(-2)
    top, index = sims.topk(4, dim=1)
    a = torch.zeros(30, 30)
    a.scatter_(1, index, top.clamp_min(0) ** 3)
    raw = a + a.T
    d = raw.sum(dim=1).rsqrt()
    assert torch.allclose(w, d[:, None] * raw * d[None, :], atol=1e-6)


def test_symmetric_edges_sum_an_edge_in_both_lists_and_come_in_coalesced_order():
    # 0 -> 1 (a), 1 -> 0 (b), 2 -> 0 (c): W = A + A^T has (0, 1) = (1, 0) = a + b, (0, 2) = (2, 0) = c
    a, b, c = 0.5, 0.25, 0.125
    indices, values = symmetric_edges(torch.tensor([[1], [0], [0]]), torch.tensor([a, b, c]))
    assert indices.tolist() == [[0, 0, 1, 2], [1, 2, 0, 0]]
    assert values.tolist() == [a + b, c, a + b, c]


def test_symmetric_edges_are_those_of_a_coalesced_sparse_tensor_to_the_bit():
    rng = np.random.default_rng(3)
    n, k = 500, 7
    neighbours = [rng.choice(np.delete(np.arange(n), i), k, replace=False) for i in range(n)]  # distinct
    cols = torch.from_numpy(np.stack(neighbours))
    values = torch.from_numpy(rng.random(n * k)).float()
    rows = torch.arange(n).repeat_interleave(k)
    edges = torch.stack([torch.cat([rows, cols.flatten()]), torch.cat([cols.flatten(), rows])])
    reference = torch.sparse_coo_tensor(edges, torch.cat([values, values]), (n, n), check_invariants=True)
    reference = reference.coalesce()
    indices, summed = symmetric_edges(cols, values)
    assert len(summed) < 2 * n * k  # an edge in both lists is one entry (54 fewer here)
    assert torch.equal(indices, reference.indices()) and torch.equal(summed, reference.values())


def test_conjugate_gradient_solves_a_symmetric_positive_definite_system():
    rng = np.random.default_rng(1)
    m = torch.from_numpy(rng.normal(size=(12, 12))).double()
    m = m @ m.T + 12 * torch.eye(12, dtype=torch.double)
    b = torch.from_numpy(rng.normal(size=(12, 3))).double()
    z = conjugate_gradient(lambda v: m @ v, b, iterations=50, tolerance=1e-12)
    assert torch.allclose(z, torch.linalg.solve(m, b), atol=1e-9)


def test_label_propagation_matches_the_closed_form_with_class_mass_normalization():
    rng = np.random.default_rng(2)
    labeled, pool = rng.normal(size=(4, 6)), rng.normal(size=(40, 6))
    labels = np.array([0, 1, 2, 2])
    probs = label_propagation(labeled, labels, pool, 3, k=5, alpha=0.9, exact_max=100, iterations=200)
    # The closed form by a dense solve: Z = (I - a W)^-1 Y, Y_ic = 1 / |L_c|.
    w = (
        knn_affinity(torch.from_numpy(np.concatenate([labeled, pool])).float(), 5, 3.0, 100)
        .to_dense()
        .double()
    )
    y = torch.zeros(44, 3, dtype=torch.double)
    y[torch.arange(4), torch.from_numpy(labels)] = torch.tensor([1.0, 1.0, 0.5, 0.5], dtype=torch.double)
    z = torch.linalg.solve(torch.eye(44, dtype=torch.double) - 0.9 * w, y)[4:].clamp_min(0)
    z = z / z.sum(dim=0, keepdim=True)
    expected = (z / z.sum(dim=1, keepdim=True)).numpy()
    np.testing.assert_allclose(probs, expected, atol=1e-4)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def arc(degrees: np.ndarray, height: float) -> np.ndarray:
    """Points at `degrees` around the z axis, at height `height` (compared by cosine: directions)."""
    radians = np.deg2rad(degrees)
    return np.stack([np.cos(radians), np.sin(radians), np.full_like(radians, height)], axis=1)


def test_labels_spread_along_a_chain_where_the_nearest_labeled_image_is_the_wrong_class():
    """Two arcs, 2 degrees between neighbours, 27 degrees between the arcs. Arc 0 runs from its labeled image
    at 0 degrees to 170, arc 1 the other way from its labeled image at 180 degrees to 10, so the far end of
    each arc lies next to the other arc's labeled image: labeling by the most similar labeled image gets the
    far ends wrong. Propagation follows each arc and labels every point by its arc."""
    arc0, arc1 = arc(np.arange(0, 171, 2.0), 0.0), arc(np.arange(180, 9, -2.0), 0.5)
    labeled, pool = np.stack([arc0[0], arc1[0]]), np.concatenate([arc0[1:], arc1[1:]])
    truth = np.repeat([0, 1], [len(arc0) - 1, len(arc1) - 1])
    probs = label_propagation(
        labeled, np.array([0, 1]), pool, 2, k=2, alpha=0.99, exact_max=1000, iterations=500
    )
    assert (probs.argmax(axis=1) == truth).all()
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    nearest_labeled = (unit(pool) @ unit(labeled).T).argmax(axis=1)
    assert (nearest_labeled == truth).mean() < 0.7  # the far ends go to the other class


def test_propagate_pool_weight_zero_keeps_the_teacher_and_one_replaces_it():
    rng = np.random.default_rng(3)
    labeled, pool = rng.normal(size=(6, 4)), rng.normal(size=(30, 4))
    labels = np.array([0, 0, 1, 1, 2, 2])
    teacher = rng.dirichlet(np.ones(3), size=30).astype(np.float32)
    cfg = PropagationConfig(weight=0.0, features="teacher", temperature=0.5, k=5, alpha=0.9, exact_max=100)
    assert propagate_pool(cfg, teacher, pool, labeled, labels) is teacher
    alone = propagate_pool(cfg.model_copy(update={"weight": 1.0}), teacher, pool, labeled, labels)
    propagated = label_propagation(labeled, labels, pool, 3, 5, 0.9, 100)
    sharpened = propagated**2 / (propagated**2).sum(axis=1, keepdims=True)  # T = 0.5
    np.testing.assert_allclose(alone, sharpened, atol=1e-6)
    assert (alone.max(axis=1) >= propagated.max(axis=1) - 1e-6).all()
    half = propagate_pool(cfg.model_copy(update={"weight": 0.5}), teacher, pool, labeled, labels)
    np.testing.assert_allclose(half, 0.5 * teacher + 0.5 * alone, atol=1e-6)


def test_label_mass_scores_match_the_closed_form_with_held_out_folds():
    rng = np.random.default_rng(4)
    labeled, pool = rng.normal(size=(6, 5)), rng.normal(size=(40, 5))
    labels, folds = np.array([0, 0, 1, 1, 2, 2]), np.array([0, 1, 0, 1, 0, 1])
    scores, held_out = label_mass_scores(
        labeled, labels, pool, 3, folds, k=5, alpha=0.9, exact_max=100, iterations=200
    )
    w = (
        knn_affinity(torch.from_numpy(np.concatenate([labeled, pool])).float(), 5, 3.0, 100)
        .to_dense()
        .double()
    )
    solve = lambda y: torch.linalg.solve(torch.eye(46, dtype=torch.double) - 0.9 * w, y)  # noqa: E731

    def mass(sources: np.ndarray) -> np.ndarray:  # Y_ic = 1 / |L_c| over the source images of class c
        y = torch.zeros(46, 3, dtype=torch.double)
        for i in sources:
            y[i, labels[i]] = 1.0 / (labels[sources] == labels[i]).sum()
        return solve(y).clamp_min(0).sum(dim=1).numpy()

    np.testing.assert_allclose(scores, -np.log(mass(np.arange(6)))[6:], atol=1e-4)
    for fold in (0, 1):  # image i of fold f: the mass from the labels of the other fold only
        held = folds == fold
        np.testing.assert_allclose(held_out[held], -np.log(mass(np.flatnonzero(~held)))[:6][held], atol=1e-4)


def test_a_cluster_no_labeled_image_reaches_scores_as_ood_though_a_labeled_image_is_near():
    """Two labeled arcs (2 degrees between neighbours) and a tight cluster of 20 images of a class nobody
    labeled, about 31 degrees from arc 0's labeled image: nearer to it than the middle of either arc is to
    any labeled image. The kNN distance to the labeled images calls the arcs' middles more out of
    distribution than the cluster; the label mass, which flows only along the arcs, ranks every cluster
    image above every arc image."""
    arc0, arc1 = arc(np.arange(0, 171, 2.0), 0.0), arc(np.arange(180, 9, -2.0), 0.5)
    cluster = arc(np.linspace(-25, -15, 20), -0.6)
    labeled = np.stack([arc0[0], arc0[1], arc1[0], arc1[1]])
    pool = np.concatenate([arc0[2:], arc1[2:], cluster])
    labels, folds = np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1])
    scores, held_out = label_mass_scores(
        labeled, labels, pool, 2, folds, k=2, alpha=0.99, exact_max=1000, iterations=500
    )
    in_arcs, in_cluster = scores[:-20], scores[-20:]
    assert in_cluster.min() > in_arcs.max()
    assert np.isfinite(held_out).all() and held_out.max() < in_cluster.min()
    distance = knn_distance(pool, labeled, 1)
    assert distance[:-20].max() > distance[-20:].min()  # the kNN distance gets some of this wrong
