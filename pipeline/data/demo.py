"""Demo data: export Fashion-MNIST (Debian's `dataset-fashion-mnist` IDX files) into the folder layout.

data/labeled/<class>/<id>.png     `labels_per_class` images per class, drawn from the training set
data/unlabeled/<shard>/<id>.png   `unlabeled` other training images, nested in shards of 1000
data/test/<class>/<id>.png        the 10 000 test images
data/analysis.csv                 path,label of every unlabeled image: for analysis only, never training
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from tqdm import tqdm

DEBIAN_IDX_DIR = Path("/usr/share/datasets/fashion-mnist")
CLASSES = [
    "t-shirt_top",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle_boot",
]


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped): big-endian magic, dims, then uint8 data."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if raw[:2] != b"\x00\x00" or raw[2] != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file (magic {raw[:4].hex()})")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path}: expected {dims} = {int(np.prod(dims))} bytes, found {data.size}")
    return data.reshape(dims)


def load_fashion_mnist(idx_dir: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{'train': (images (60000, 28, 28), labels), 'test': (...)} from a folder of the four IDX files."""
    out = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        pair = []
        for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"):
            candidates = [idx_dir / f"{prefix}-{kind}.gz", idx_dir / f"{prefix}-{kind}"]
            found = next((p for p in candidates if p.is_file()), None)
            if found is None:
                raise FileNotFoundError(
                    f"Fashion-MNIST file {prefix}-{kind}[.gz] not found in {idx_dir}; install Debian's "
                    "package (apt-get install dataset-fashion-mnist) or pass --idx-dir"
                )
            pair.append(read_idx(found))
        out[split] = (pair[0], pair[1])
    return out


def split_indices(
    labels: np.ndarray, labels_per_class: int, n_unlabeled: int, seed: int, classes: list[int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Pick `labels_per_class` labeled images of each class in `classes` and `n_unlabeled` others, seeded."""
    rng = np.random.default_rng(seed)
    classes = sorted(set(labels.tolist())) if classes is None else classes
    labeled = np.concatenate(
        [rng.choice(np.flatnonzero(labels == c), labels_per_class, replace=False) for c in classes]
    )
    rest = np.setdiff1d(np.arange(len(labels)), labeled)
    if n_unlabeled > len(rest):
        raise ValueError(f"asked for {n_unlabeled} unlabeled images, only {len(rest)} remain")
    unlabeled = rng.choice(rest, n_unlabeled, replace=False)
    return np.sort(labeled), np.sort(unlabeled)


def _save_png(img: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img, mode="L").save(path, optimize=False)


def export_demo(
    out: Path,
    idx_dir: Path = DEBIAN_IDX_DIR,
    labels_per_class: int = 4,
    n_unlabeled: int = 20_000,
    n_test: int | None = None,
    seed: int = 0,
    force: bool = False,
) -> dict[str, int]:
    """Write the demo folders under `out` and return image counts per split.

    Refuses to touch existing `labeled/`, `unlabeled/` or `test/` folders unless `force` (which replaces
    only these demo folders, never anything else under `out`).
    """
    data = load_fashion_mnist(idx_dir)
    train_x, train_y = data["train"]
    test_x, test_y = data["test"]
    targets = [out / "labeled", out / "unlabeled", out / "test"]
    existing = [p for p in targets if p.exists()]
    if existing and not force:
        raise FileExistsError(f"{', '.join(map(str, existing))} already exist; pass --force to replace them")
    for p in existing:
        shutil.rmtree(p)

    labeled, unlabeled = split_indices(train_y, labels_per_class, n_unlabeled, seed)
    test_idx = (
        np.arange(len(test_y))
        if n_test is None
        else np.sort(np.random.default_rng(seed + 1).choice(len(test_y), n_test, replace=False))
    )
    for i in tqdm(labeled, desc="labeled", leave=False):
        _save_png(train_x[i], out / "labeled" / CLASSES[train_y[i]] / f"train_{i:05d}.png")
    rows = []
    for n, i in enumerate(tqdm(unlabeled, desc="unlabeled", leave=False)):
        rel = Path("unlabeled") / f"shard_{n // 1000:03d}" / f"train_{i:05d}.png"
        _save_png(train_x[i], out / rel)
        rows.append((rel.relative_to("unlabeled").as_posix(), CLASSES[train_y[i]]))
    for i in tqdm(test_idx, desc="test", leave=False):
        _save_png(test_x[i], out / "test" / CLASSES[test_y[i]] / f"test_{i:05d}.png")
    pd.DataFrame(rows, columns=["path", "label"]).to_csv(out / "analysis.csv", index=False)
    return {"labeled": len(labeled), "unlabeled": len(unlabeled), "test": len(test_idx)}
