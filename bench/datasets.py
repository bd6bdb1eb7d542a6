"""Benchmark datasets other than the demo, exported in the demo's folder layout (pipeline/data/demo.py):
labeled/<class>/*.png, unlabeled/shard_<k>/*.png, test/<class>/*.png and analysis.csv (path,label of each
unlabeled image, path relative to unlabeled/).

digits   scikit-learn's bundled 8x8 handwritten digits (1,797 images, grayscale): 500 test images,
         5 labels per class, the rest unlabeled.
tinted   Fashion-MNIST items upscaled to 48x48 in a random colour, over smooth random noise in another
         colour (RGB): 4 labels per class, 3,000 unlabeled, 2,000 test images.

    python bench/datasets.py tinted --out /tmp/tinted      # to look at the images
"""

from __future__ import annotations

import argparse
import colorsys
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from sklearn.datasets import load_digits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo: pipeline.data.demo

from pipeline.data.demo import CLASSES, DEBIAN_IDX_DIR, _save_png, load_fashion_mnist, split_indices  # noqa: E402

NOISE_GRID = 6  # cells of the background's coarse noise per side: blobs of about 8 px at 48 px
SHARD = 1000  # unlabeled images per folder, as in the demo

# A split as the writer takes it: images (N, H, W) or (N, H, W, 3) uint8, class names, file stems.
Split = tuple[np.ndarray, list[str], list[str]]


def save_png(img: np.ndarray, path: Path) -> None:
    """The demo's PNG writer for grayscale images; an (H, W, 3) image as RGB."""
    if img.ndim == 2:
        _save_png(img, path)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path, optimize=False)


def write_layout(out: Path, labeled: Split, unlabeled: Split, test: Split) -> dict[str, int]:
    """Write the three folders and analysis.csv under `out`; image counts per split. Refuses to overwrite."""
    existing = [p for p in (out / "labeled", out / "unlabeled", out / "test") if p.exists()]
    if existing:
        raise FileExistsError(f"{', '.join(map(str, existing))} already exist")
    for split, (images, labels, stems) in (("labeled", labeled), ("test", test)):
        for img, label, stem in zip(images, labels, stems, strict=True):
            save_png(img, out / split / label / f"{stem}.png")
    rows = []
    for n, (img, label, stem) in enumerate(zip(*unlabeled, strict=True)):
        rel = f"shard_{n // SHARD:03d}/{stem}.png"
        save_png(img, out / "unlabeled" / rel)
        rows.append((rel, label))
    pd.DataFrame(rows, columns=["path", "label"]).to_csv(out / "analysis.csv", index=False)
    return {"labeled": len(labeled[0]), "unlabeled": len(unlabeled[0]), "test": len(test[0])}


def export_digits(out: Path, seed: int = 0, n_test: int = 500, labels_per_class: int = 5) -> dict[str, int]:
    """scikit-learn's 8x8 digits as grayscale PNGs (values 0..16 scaled to 0..255), split seeded."""
    digits = load_digits()
    images = np.round(digits.images * (255 / 16)).astype(np.uint8)  # (1797, 8, 8)
    labels = digits.target
    test = np.sort(np.random.default_rng(seed + 1).choice(len(labels), n_test, replace=False))
    rest = np.setdiff1d(np.arange(len(labels)), test)
    n_classes = len(np.unique(labels))
    labeled, unlabeled = split_indices(
        labels[rest], labels_per_class, len(rest) - n_classes * labels_per_class, seed
    )

    def split(index: np.ndarray) -> Split:
        return images[index], [str(c) for c in labels[index]], [f"digit_{i:04d}" for i in index]

    return write_layout(out, split(rest[labeled]), split(rest[unlabeled]), split(test))


def hsv_colour(rng: np.random.Generator, hue: float, saturation: tuple[float, float],
               value: tuple[float, float]) -> np.ndarray:  # fmt: skip
    """An RGB colour (3,) in [0, 1] of this hue, saturation and value drawn uniformly in the ranges."""
    return np.array(colorsys.hsv_to_rgb(hue % 1.0, rng.uniform(*saturation), rng.uniform(*value)))


def resize(img: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of a 2-D array (uint8 or float32) to size x size."""
    return np.asarray(Image.fromarray(img).resize((size, size), Image.Resampling.BILINEAR))


def tint(items: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """(N, h, w) uint8 grayscale items -> (N, size, size, 3) uint8: each item upscaled, in a random bright
    colour, composited on smooth random noise in a darker colour of another hue. The item's intensity is its
    alpha, so the item stays visible on any background."""
    out = np.empty((len(items), size, size, 3), np.uint8)
    for i, item in enumerate(items):
        alpha = (resize(item, size) / 255.0)[..., None]  # (size, size, 1)
        hue = rng.random()
        item_colour = hsv_colour(rng, hue, (0.5, 1.0), (0.75, 1.0))
        background_colour = hsv_colour(rng, hue + rng.uniform(0.25, 0.75), (0.3, 1.0), (0.25, 0.6))
        noise = resize(rng.random((NOISE_GRID, NOISE_GRID), dtype=np.float32), size)  # smooth, in [0, 1]
        background = (0.4 + 0.6 * noise)[..., None] * background_colour  # (size, size, 3)
        out[i] = np.round(255 * (alpha * item_colour + (1 - alpha) * background))
    return out


def export_tinted(
    out: Path,
    idx_dir: Path = DEBIAN_IDX_DIR,
    seed: int = 0,
    labels_per_class: int = 4,
    n_unlabeled: int = 3000,
    n_test: int = 2000,
    size: int = 48,
) -> dict[str, int]:
    """Fashion-MNIST tinted on textured backgrounds as size x size RGB PNGs; the same files for a seed."""
    data = load_fashion_mnist(idx_dir)
    train_x, train_y = data["train"]
    test_x, test_y = data["test"]
    labeled, unlabeled = split_indices(train_y, labels_per_class, n_unlabeled, seed)
    test = np.sort(np.random.default_rng(seed + 1).choice(len(test_y), n_test, replace=False))
    rng = np.random.default_rng(seed + 2)  # the colours and backgrounds, drawn in the order of the splits

    def split(x: np.ndarray, y: np.ndarray, index: np.ndarray, prefix: str) -> Split:
        return tint(x[index], size, rng), [CLASSES[c] for c in y[index]], [f"{prefix}_{i:05d}" for i in index]

    return write_layout(
        out,
        split(train_x, train_y, labeled, "train"),
        split(train_x, train_y, unlabeled, "train"),
        split(test_x, test_y, test, "test"),
    )


EXPORTERS = {"digits": export_digits, "tinted": export_tinted}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("dataset", choices=sorted(EXPORTERS))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    counts = EXPORTERS[args.dataset](args.out, seed=args.seed)
    print(f"{args.dataset}: {counts} -> {args.out}")


if __name__ == "__main__":
    main()
