"""Demo data: export Fashion-MNIST (Debian's `dataset-fashion-mnist` IDX files) into the folder layout.

data/labeled/<class>/<id>.png     `labels_per_class` images per class, drawn from the training set
data/unlabeled/<shard>/<id>.png   `unlabeled` other training images, nested in shards of 1000
data/test/<class>/<id>.png        the 10 000 test images
data/analysis.csv                 path,label of every unlabeled image: for analysis only, never training

Class mismatch (Oliver et al. 2018): with `classes`, only those classes are labeled and tested, and a share
`mismatch` of the unlabeled pool comes from the other classes; `far_ood` adds rendered digit images, a source
of another domain. Their analysis labels (the unseen class, or `ood:digit`) tell OOD truth apart.
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFont
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
    labels: np.ndarray,
    labels_per_class: int,
    n_unlabeled: int,
    seed: int,
    classes: list[int] | None = None,
    mismatch: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Pick `labels_per_class` labeled images of each class in `classes` and `n_unlabeled` others, seeded.

    A share `mismatch` of the unlabeled images comes from classes outside `classes` (class mismatch).
    """
    rng = np.random.default_rng(seed)
    classes = sorted(set(labels.tolist())) if classes is None else classes
    labeled = np.concatenate(
        [rng.choice(np.flatnonzero(labels == c), labels_per_class, replace=False) for c in classes]
    )
    rest = np.setdiff1d(np.arange(len(labels)), labeled)
    is_known = np.isin(labels[rest], classes)
    n_other = round(mismatch * n_unlabeled)
    picked = []
    for pool, n, name in ((rest[is_known], n_unlabeled - n_other, ""), (rest[~is_known], n_other, "other ")):
        if n > len(pool):
            raise ValueError(f"asked for {n} unlabeled images of {name}classes, only {len(pool)} remain")
        picked.append(rng.choice(pool, n, replace=False))
    return np.sort(labeled), np.sort(np.concatenate(picked))


def render_digits(n: int, size: int, seed: int) -> np.ndarray:
    """`n` images (n, size, size) uint8 of a random digit in Pillow's built-in font, light on dark as in
    MNIST, at a random scale, offset and rotation: far out-of-distribution for clothing images."""
    rng = np.random.default_rng(seed)
    out = np.zeros((n, size, size), dtype=np.uint8)
    for i in range(n):
        font = ImageFont.load_default(size=int(rng.integers(size // 2, size - 4)))
        canvas = Image.new("L", (size, size))
        draw = ImageDraw.Draw(canvas)
        offset = rng.integers(-2, 3, 2)
        draw.text((size / 2 + offset[0], size / 2 + offset[1]), str(rng.integers(10)), fill=255, font=font,
                  anchor="mm")  # fmt: skip
        out[i] = np.asarray(canvas.rotate(float(rng.uniform(-20, 20)), resample=Image.Resampling.BILINEAR))
    return out


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
    classes: list[str] | None = None,
    mismatch: float = 0.0,
    far_ood: int = 0,
) -> dict[str, int]:
    """Write the demo folders under `out` and return image counts per split.

    classes: the labeled (and tested) classes, default all ten; `mismatch` (0..1) is the share of unlabeled
    images from the other classes, `far_ood` the number of rendered digit images added to the pool.
    Refuses to touch existing `labeled/`, `unlabeled/` or `test/` folders unless `force` (which replaces
    only these demo folders, never anything else under `out`).
    """
    classes = CLASSES if classes is None else list(dict.fromkeys(classes))  # each class once
    unknown = sorted(set(classes) - set(CLASSES))
    if unknown:
        raise ValueError(f"unknown demo classes {unknown}; Fashion-MNIST has {', '.join(CLASSES)}")
    if not 0 <= mismatch <= 1:
        raise ValueError(f"mismatch must be a share in [0, 1], got {mismatch}")
    if mismatch > 0 and len(classes) == len(CLASSES):
        raise ValueError("mismatch needs --classes: a subset of the classes to label")
    known = sorted(CLASSES.index(c) for c in classes)
    data = load_fashion_mnist(idx_dir)
    train_x, train_y = data["train"]
    test_x, test_y = data["test"]
    targets = [out / "labeled", out / "unlabeled", out / "test"]
    existing = [p for p in targets if p.exists()]
    if existing and not force:
        raise FileExistsError(f"{', '.join(map(str, existing))} already exist; pass --force to replace them")
    for p in existing:
        shutil.rmtree(p)

    labeled, unlabeled = split_indices(train_y, labels_per_class, n_unlabeled, seed, known, mismatch)
    test_pool = np.flatnonzero(np.isin(test_y, known))
    test_idx = (
        test_pool
        if n_test is None
        else np.sort(np.random.default_rng(seed + 1).choice(test_pool, n_test, replace=False))
    )
    for i in tqdm(labeled, desc="labeled", leave=False):
        _save_png(train_x[i], out / "labeled" / CLASSES[train_y[i]] / f"train_{i:05d}.png")
    rows = []
    digits = render_digits(far_ood, train_x.shape[1], seed + 3)
    sources = [(train_x[i], f"train_{i:05d}", CLASSES[train_y[i]]) for i in unlabeled]
    sources += [(img, f"digit_{j:05d}", "ood:digit") for j, img in enumerate(digits)]
    order = np.random.default_rng(seed + 4).permutation(len(sources)) if far_ood else range(len(sources))
    for n, k in enumerate(tqdm(order, desc="unlabeled", leave=False)):
        img, name, label = sources[k]
        rel = Path("unlabeled") / f"shard_{n // 1000:03d}" / f"{name}.png"
        _save_png(img, out / rel)
        rows.append((rel.relative_to("unlabeled").as_posix(), label))
    for i in tqdm(test_idx, desc="test", leave=False):
        _save_png(test_x[i], out / "test" / CLASSES[test_y[i]] / f"test_{i:05d}.png")
    pd.DataFrame(rows, columns=["path", "label"]).to_csv(out / "analysis.csv", index=False)
    return {"labeled": len(labeled), "unlabeled": len(sources), "test": len(test_idx)}
