"""How many of the exact nearest neighbours the inverted-file search of label propagation's graph finds, how
fast, and what it changes in the propagated labels (docs/neighbours.md).

Features: Fashion-MNIST's 70,000 images (train + test), pixels centred and projected to 128 dimensions by a
seeded Gaussian matrix (compared by cosine, as the graph does); the million-image pool cycles them with a
little Gaussian noise, as bench/scale.py's pool cycles the images. For each size: the exact search's time
(where it takes minutes, not hours), the IVF search's time with `probes` cells searched per cell, and its
recall@k on `--queries` sampled images whose exact neighbours are found by brute force. At 70,000 images,
label propagation with 4 labels per class (seeded) on the exact and on the IVF graph: accuracy on the rest
and the share of images labeled alike.

    python bench/neighbours.py                     # about 4 minutes on the 2-core CPU
    python bench/neighbours.py --sizes 10000 --doc /tmp/n.md  # smoke
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, doc_header, write_doc  # noqa: E402

from pipeline.data.demo import DEBIAN_IDX_DIR, load_fashion_mnist  # noqa: E402
from pipeline.pseudo.neighbours import exact_neighbours, ivf_neighbours  # noqa: E402
from pipeline.pseudo.propagation import label_propagation  # noqa: E402

EXACT_UP_TO = 100_000  # the exact search beyond this takes hours on the 2-core CPU


def fashion_features(idx_dir: Path, dims: int) -> tuple[torch.Tensor, np.ndarray]:
    """(70000, dims) projected pixels, centred, and the labels."""
    data = load_fashion_mnist(idx_dir)
    pixels = np.concatenate([data[s][0] for s in data]).reshape(-1, 784).astype(np.float32)
    labels = np.concatenate([data[s][1] for s in data]).astype(np.int64)
    projection = torch.randn(784, dims, generator=torch.Generator().manual_seed(0))
    return torch.from_numpy(pixels - pixels.mean(axis=0)) @ projection, labels


def pool_of(features: torch.Tensor, n: int) -> torch.Tensor:
    """n unit rows: the features cycled, each copy with Gaussian noise of 5 % of their spread."""
    if n <= len(features):
        return torch.nn.functional.normalize(features[:n], dim=1)
    noise = torch.randn(n, features.shape[1], generator=torch.Generator().manual_seed(1))
    return torch.nn.functional.normalize(
        features[torch.arange(n) % len(features)] + 0.05 * features.std() * noise
    )


def recall(x: torch.Tensor, found: torch.Tensor, k: int, queries: int) -> float:
    """Share of the exact k nearest neighbours of `queries` sampled rows that `found` (N, k) holds."""
    rows = torch.randperm(len(x), generator=torch.Generator().manual_seed(2))[:queries]
    sims = x[rows] @ x.T
    sims[torch.arange(len(rows)), rows] = -2.0
    exact = sims.topk(k, dim=1).indices
    return float((found[rows][:, :, None] == exact[:, None, :]).any(dim=2).float().mean())


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 70_000, 1_000_000])
    parser.add_argument("--probes", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--idx-dir", type=Path, default=DEBIAN_IDX_DIR)
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "neighbours.md")
    args = parser.parse_args()
    torch.manual_seed(0)
    features, labels = fashion_features(args.idx_dir, 128)

    rows = [
        "| images | cells | probes | recall@k | IVF s | exact s |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for n in args.sizes:
        x = pool_of(features, n)
        cells = round(4 * math.sqrt(n))
        exact_s = timed(exact_neighbours, x, args.k)[1] if n <= EXACT_UP_TO else float("nan")
        for probes in args.probes:
            (_, found), ivf_s = timed(ivf_neighbours, x, args.k, cells, probes, 0)
            found_share = recall(x, found, args.k, args.queries)
            exact = f"{exact_s:.1f}" if exact_s == exact_s else "-"
            rows.append(f"| {n:,} | {cells:,} | {probes} | {found_share:.3f} | {ivf_s:.1f} | {exact} |")
            print(rows[-1], flush=True)

    n = min(len(features), max(args.sizes))
    rng = np.random.default_rng(0)
    picked = np.concatenate(
        [rng.choice(np.flatnonzero(labels[:n] == c), 4, replace=False) for c in range(10)]
    )
    rest = np.setdiff1d(np.arange(n), picked)
    x, y = features[:n].numpy(), labels[:n]
    prop = ["| graph | accuracy | seconds |", "| --- | ---: | ---: |"]
    predicted = {}
    for name, exact_max in (("exact", n), ("IVF (default probes)", 1)):
        probs, seconds = timed(label_propagation, x[picked], y[picked], x[rest], 10, args.k, 0.99, exact_max)
        predicted[name] = probs.argmax(axis=1)
        prop.append(f"| {name} | {(predicted[name] == y[rest]).mean():.2%} | {seconds:.1f} |")
        print(prop[-1], flush=True)
    alike = (predicted["exact"] == predicted["IVF (default probes)"]).mean()

    command = "python bench/neighbours.py" + (" " + " ".join(sys.argv[1:]) if sys.argv[1:] else "")
    lines = doc_header("Neighbour search of label propagation's graph: inverted file against exact", command)
    lines += [
        __doc__.split("\n\n")[1].replace("\n", " "),
        "",
        f"k = {args.k}; recall on {args.queries:,} sampled images; cells = round(4 sqrt(N)).",
        "",
        *rows,
        "",
        f"Label propagation on the first {n:,} images, 4 labels per class, k = {args.k}, alpha = 0.99:",
        "",
        *prop,
        "",
        f"The two graphs label {alike:.2%} of the images alike.",
    ]
    write_doc(args.doc, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
