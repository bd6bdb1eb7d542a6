"""The k nearest neighbours of every image among all the others, by cosine similarity, for label propagation's
graph (pipeline.pseudo.propagation).

Up to `exact_max` images the search is exact: every pair is compared, N^2 similarities, a block of rows at a
time. Beyond, an inverted-file search (IVF: Jégou et al. 2011, "Product quantization for nearest neighbor
search", sec. IV; faiss's IndexIVFFlat) keeps the time near-linear in N. Spherical k-means splits the
images into `cells` (Voronoi cells of unit centroids); the images of one cell compare themselves, exactly,
with the images of the `probes` cells whose centroids are nearest their own centroid (their own cell first).
A neighbour in a cell that is not probed is missed; docs/scale.md measures how many. Both searches are
deterministic: the k-means starts from a seeded sample of the images.
"""

from __future__ import annotations

import math

import torch

# similarities held at once (2**26: 256 MiB), so memory stays flat in N
MAX_BLOCK = 2**26


def nearest_neighbours(
    x: torch.Tensor, k: int, exact_max: int, probes: int = 32, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """(similarities, indices), each (N, k), of the k nearest neighbours of every row of `x` (N, d),
    L2-normalized, itself excluded, most similar first: exact when N <= exact_max, else by an IVF search of
    round(4 sqrt(N)) cells (faiss's guideline: 4 to 16 sqrt(N)), `probes` of them searched per cell."""
    assert 0 < k < len(x), f"k={k} neighbours need more than {len(x)} images"
    if len(x) <= exact_max:
        return exact_neighbours(x, k)
    cells = min(len(x), round(4 * math.sqrt(len(x))))
    return ivf_neighbours(x, k, cells, min(probes, cells), seed)


def exact_neighbours(x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every row against every other: N^2 d multiply-adds."""
    values, neighbours = torch.empty(len(x), k), torch.empty(len(x), k, dtype=torch.long)
    everyone = torch.arange(len(x))
    search_among(x, k, everyone, everyone, values, neighbours)
    return values, neighbours


def search_among(
    x: torch.Tensor,
    k: int,
    members: torch.Tensor,
    candidates: torch.Tensor,
    values: torch.Tensor,
    neighbours: torch.Tensor,
) -> None:
    """Fill rows `members` of `values` and `neighbours` (N, k) with their k most similar `candidates` (row
    indices of x, members first in the same order: never its own neighbour), exactly, (chunk, candidates)
    similarities at a time."""
    chunk, reference = max(1, MAX_BLOCK // len(candidates)), x[candidates].T
    for s in range(0, len(members), chunk):
        rows = members[s : s + chunk]
        sims = x[rows] @ reference
        own = torch.arange(len(rows))
        sims[own, own + s] = -2.0  # never its own neighbour
        top, index = sims.topk(k, dim=1)
        values[rows], neighbours[rows] = top, candidates[index]


def spherical_kmeans(x: torch.Tensor, cells: int, iterations: int, seed: int) -> torch.Tensor:
    """Unit centroids (cells, d) of unit rows `x` (Dhillon & Modha 2001): assign each row to its most similar
    centroid, then c_j = normalize(sum of its rows). Starts from `cells` distinct rows drawn with `seed`, and
    trains on at most 64 rows a cell (faiss samples the same way); an empty cell keeps its centroid."""
    generator = torch.Generator().manual_seed(seed)
    sample = x[torch.randperm(len(x), generator=generator)[: 64 * cells]]
    centroids = sample[:cells].clone()
    for _ in range(iterations):
        cell = assign_cells(sample, centroids)
        sums = torch.zeros_like(centroids).index_add_(0, cell, sample)
        filled = torch.bincount(cell, minlength=cells) > 0
        centroids[filled] = torch.nn.functional.normalize(sums[filled], dim=1)
    return centroids


def assign_cells(x: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """(N,) index of each row's most similar centroid, a block of rows at a time."""
    chunk = max(1, MAX_BLOCK // len(centroids))
    return torch.cat([(x[s : s + chunk] @ centroids.T).argmax(dim=1) for s in range(0, len(x), chunk)])


def ivf_neighbours(
    x: torch.Tensor, k: int, cells: int, probes: int, seed: int, iterations: int = 10
) -> tuple[torch.Tensor, torch.Tensor]:
    """The IVF search (module docstring): about N (probes N / cells + cells) d multiply-adds. A cell searches
    further cells, nearest centroid first, until it has more than k candidates."""
    centroids = spherical_kmeans(x, cells, iterations, seed)
    cell = assign_cells(x, centroids)
    order = torch.argsort(cell, stable=True)  # the images of cell c: order[starts[c] : starts[c + 1]]
    starts = torch.zeros(cells + 1, dtype=torch.long)
    starts[1:] = torch.bincount(cell, minlength=cells).cumsum(0)
    nearness = centroids @ centroids.T
    nearness.fill_diagonal_(float("inf"))  # a cell's own images first: row i of a cell is candidate i
    values = torch.empty(len(x), k)
    neighbours = torch.empty(len(x), k, dtype=torch.long)
    for c in range(cells):
        members = order[starts[c] : starts[c + 1]]
        if len(members) == 0:
            continue
        searched = nearness[c].argsort(descending=True, stable=True)
        sizes = (starts[searched + 1] - starts[searched]).cumsum(0)
        last = max(probes, int(torch.searchsorted(sizes, k, right=True)) + 1)
        candidates = torch.cat([order[starts[j] : starts[j + 1]] for j in searched[:last].tolist()])
        search_among(x, k, members, candidates, values, neighbours)
    return values, neighbours
