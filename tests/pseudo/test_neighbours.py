"""The neighbour search of propagation's graph: the exact search against a full sort, and the inverted-file
search against the exact one (the same neighbours when every cell is searched, most of them otherwise)."""

import torch

from pipeline.pseudo.neighbours import exact_neighbours, ivf_neighbours, nearest_neighbours, spherical_kmeans
from pipeline.pseudo.propagation import label_propagation


def unit(n: int, d: int, seed: int) -> torch.Tensor:
    return torch.nn.functional.normalize(
        torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=1
    )


def blobs(n: int, centres: int, seed: int) -> torch.Tensor:
    """n unit vectors in `centres` tight clusters of 16 dimensions: a pool of images of a few kinds."""
    g = torch.Generator().manual_seed(seed)
    centre = torch.randn(centres, 16, generator=g)
    return torch.nn.functional.normalize(
        centre[torch.arange(n) % centres] + 0.3 * torch.randn(n, 16, generator=g)
    )


def test_exact_neighbours_are_the_k_most_similar_others_by_a_full_sort():
    x = unit(50, 6, 0)
    values, index = exact_neighbours(x, 5)
    sims = x @ x.T
    for i in range(50):
        order = [j for j in sims[i].argsort(descending=True).tolist() if j != i][:5]
        assert index[i].tolist() == order
        torch.testing.assert_close(values[i], sims[i, order])


def test_ivf_searching_every_cell_finds_exactly_the_exact_neighbours():
    x = unit(300, 8, 1)
    exact_values, exact_index = exact_neighbours(x, 7)
    values, index = ivf_neighbours(x, 7, cells=12, probes=12, seed=0)
    assert torch.equal(index.sort(dim=1).values, exact_index.sort(dim=1).values)
    torch.testing.assert_close(values, exact_values)


def test_ivf_finds_most_neighbours_probing_a_few_cells_and_never_itself():
    x = blobs(4000, 40, 2)
    _, exact_index = exact_neighbours(x, 10)
    values, index = ivf_neighbours(x, 10, cells=250, probes=16, seed=0)
    recall = (index[:, :, None] == exact_index[:, None, :]).any(dim=2).float().mean()
    assert recall > 0.9, recall
    assert not (index == torch.arange(4000)[:, None]).any()
    assert (index.sort(dim=1).values.diff(dim=1) > 0).all()  # k distinct neighbours in every row
    torch.testing.assert_close(values, (x[:, None, :] * x[index]).sum(dim=2))
    again = ivf_neighbours(x, 10, cells=250, probes=16, seed=0)
    assert torch.equal(again[1], index) and torch.equal(again[0], values)  # deterministic


def test_a_cell_with_too_few_candidates_searches_further_cells():
    x = unit(60, 4, 3)
    values, index = ivf_neighbours(x, 12, cells=20, probes=1, seed=0)  # about 3 images a cell
    assert not (index == torch.arange(60)[:, None]).any()
    assert (index.sort(dim=1).values.diff(dim=1) > 0).all()
    assert (values[:, :-1] >= values[:, 1:]).all()


def test_spherical_kmeans_converges_to_the_mean_direction_of_each_cell_and_search_switches_at_exact_max():
    x = unit(400, 8, 4)  # fewer than 64 a cell: every row trains
    start, centroids = (spherical_kmeans(x, 8, iterations=n, seed=0) for n in (0, 50))
    fit = lambda c: (x @ c.T).max(dim=1).values.mean()  # noqa: E731  the objective k-means maximizes
    assert fit(centroids) > fit(start) + 0.02
    cell = (x @ centroids.T).argmax(dim=1)  # Lloyd's fixed point: each centroid is its cell's mean direction
    means = torch.zeros(8, 8).index_add_(0, cell, x)
    torch.testing.assert_close(centroids, torch.nn.functional.normalize(means, dim=1))
    x = blobs(400, 4, 4)
    exact = exact_neighbours(x, 5)
    assert all(torch.equal(a, b) for a, b in zip(nearest_neighbours(x, 5, exact_max=400), exact, strict=True))
    _, approximate = nearest_neighbours(x, 5, exact_max=399, probes=1)
    assert not torch.equal(approximate, exact[1])  # 80 cells, 1 probed: some neighbours missed


def test_label_propagation_on_the_inverted_file_graph_labels_the_pool_as_on_the_exact_one():
    x = blobs(3000, 6, 5).numpy()
    labeled, labels, pool = x[:12], torch.arange(12).numpy() % 6, x[12:]
    exact = label_propagation(labeled, labels, pool, 6, k=10, alpha=0.99, exact_max=3012)
    approximate = label_propagation(labeled, labels, pool, 6, k=10, alpha=0.99, exact_max=3011)
    assert (exact.argmax(axis=1) == approximate.argmax(axis=1)).mean() > 0.99
    assert (approximate.argmax(axis=1) == torch.arange(12, 3000).numpy() % 6).mean() > 0.95  # its cluster
