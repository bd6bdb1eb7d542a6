"""Read the prepared store: the manifest, the memory-mapped pixels and the class list."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Split:
    """Usable images of one split: rows of the store, labels as class indices (-1 when unlabeled)."""

    index: np.ndarray  # (N,) int64 rows of images.npy
    labels: np.ndarray  # (N,) int64
    sha256: np.ndarray  # (N,) str
    paths: np.ndarray  # (N,) str, relative to the split folder


@dataclass(frozen=True)
class Prepared:
    manifest: pd.DataFrame
    images: np.ndarray  # (N, H, W, C) uint8, memory-mapped
    classes: list[str]
    stats: dict[str, list[float]]  # per-channel mean and std in [0, 1]

    def split(self, name: str) -> Split:
        rows = self.manifest[(self.manifest["split"] == name) & (self.manifest["status"] == "ok")]
        class_index = {c: i for i, c in enumerate(self.classes)}
        labels = np.array([class_index.get(c, -1) for c in rows["label"]], dtype=np.int64)
        return Split(
            index=rows["index"].to_numpy(np.int64),
            labels=labels,
            sha256=rows["sha256"].to_numpy(str),
            paths=rows["path"].to_numpy(str),
        )


def load_prepared(directory: str | Path) -> Prepared:
    directory = Path(directory)
    missing = [
        n
        for n in ("manifest.parquet", "images.npy", "classes.json", "stats.json")
        if not (directory / n).is_file()
    ]
    if missing:
        raise FileNotFoundError(f"prepared store {directory} lacks {missing}; run the prepare stage first")
    return Prepared(
        manifest=pd.read_parquet(directory / "manifest.parquet"),
        images=np.load(directory / "images.npy", mmap_mode="r"),
        classes=json.loads((directory / "classes.json").read_text()),
        stats=json.loads((directory / "stats.json").read_text()),
    )
