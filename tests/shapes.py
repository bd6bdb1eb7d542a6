"""A small image-folder dataset that a few steps learn well: four classes of simple shapes with noise,
written as PNG files at test time. For tests that compare two runs' accuracy, which is only meaningful far
above chance (the committed Fashion-MNIST fixture stays near 30 % at test settings)."""

from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ("hstripes", "vstripes", "disc", "frame")


def shape_image(kind: str, rng: np.random.Generator, size: int = 28) -> np.ndarray:
    """One (size, size) uint8 image of `kind`, at a random place, scale and phase, with Gaussian noise."""
    rows, cols = np.mgrid[:size, :size]
    if kind in ("hstripes", "vstripes"):
        period, phase = rng.integers(4, 7), rng.integers(0, 7)
        axis = rows if kind == "hstripes" else cols
        img = ((axis + phase) % period < period // 2).astype(float)
    elif kind == "disc":
        r = rng.uniform(5, 9)
        cy, cx = rng.uniform(r, size - r, 2)
        img = ((rows - cy) ** 2 + (cols - cx) ** 2 <= r * r).astype(float)
    else:
        side = rng.integers(10, 20)
        top, left = rng.integers(0, size - side, 2)
        inside = (rows >= top) & (rows < top + side) & (cols >= left) & (cols < left + side)
        core = (rows >= top + 2) & (rows < top + side - 2) & (cols >= left + 2) & (cols < left + side - 2)
        img = (inside & ~core).astype(float)
    img = 0.15 + 0.7 * img + rng.normal(0, 0.08, img.shape)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def write_shapes(root: Path, labeled: int = 6, unlabeled: int = 240, test: int = 160, seed: int = 0) -> Path:
    """data/{labeled,test}/<class>/*.png, data/unlabeled/*.png and data/analysis.csv (path,label) under
    `root`: `labeled` images per class, `unlabeled` and `test` in all, classes in turn."""
    rng = np.random.default_rng(seed)
    lines = ["path,label"]
    for split, count in (("labeled", labeled * len(CLASSES)), ("unlabeled", unlabeled), ("test", test)):
        for i in range(count):
            kind = CLASSES[i % len(CLASSES)]
            folder = root / split if split == "unlabeled" else root / split / kind
            folder.mkdir(parents=True, exist_ok=True)
            name = f"{kind}_{i:04d}.png"
            Image.fromarray(shape_image(kind, rng)).save(folder / name)
            if split == "unlabeled":
                lines.append(f"{name},{kind}")
    (root / "analysis.csv").write_text("\n".join(lines) + "\n")
    return root
