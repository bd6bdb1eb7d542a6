"""Read the prepared store: the manifest, the pixels (read on demand) and the class list."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

# The files of a store (params.yaml paths.prepared), named here once.
MANIFEST, IMAGES, CLASSES, STATS, DECODER = (
    "manifest.parquet", "images.npy", "classes.json", "stats.json", "decoder.json"
)  # fmt: skip


class ImageFile:
    """The (N, H, W, C) uint8 array in an .npy file, indexed like an array (a row, a slice or an array of
    rows) and read on demand with `os.preadv` into fresh arrays.

    A memory map would read the same bytes, but every page it touches stays counted in the process's
    resident memory until the map is closed: after one epoch over a pool of a million 28 px images, the
    whole 750 MB store in every stage (docs/scale.md). Here only the rows asked for are copied; the file's
    pages stay in the kernel's page cache, shared and reclaimable. Consecutive rows are one read.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        header = np.load(self.path, mmap_mode="r")  # parses the .npy header; no pixel is read
        self.shape, self.dtype, self.offset = header.shape, header.dtype, header.offset
        del header
        self.row_bytes = int(np.prod(self.shape[1:])) * self.dtype.itemsize
        self.fd = os.open(self.path, os.O_RDONLY)

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, tuple):  # rows, then the rest of the key on what was read
            rows, *rest = key
            scalar = isinstance(rows, int | np.integer)
            return self[rows][tuple(rest) if scalar else (slice(None), *rest)]
        if isinstance(key, int | np.integer):  # one image, as Views reads them: one read, no index arrays
            row = int(key) + len(self) if key < 0 else int(key)
            if not 0 <= row < len(self):
                raise IndexError(f"{self.path}: row out of range for {len(self)} images")
            out = np.empty(self.shape[1:], self.dtype)
            got = os.preadv(self.fd, [out.reshape(-1).view(np.uint8)], self.offset + row * self.row_bytes)
            if got != self.row_bytes:
                raise OSError(f"{self.path}: short read at row {row} (the store was changed?)")
            return out
        if isinstance(key, slice):
            return self._read(np.arange(*key.indices(len(self))))
        return self._read(np.asarray(key, dtype=np.int64).reshape(-1))

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype)

    def _read(self, rows: np.ndarray) -> np.ndarray:
        out = np.empty((len(rows), *self.shape[1:]), self.dtype)
        if len(rows) == 0:
            return out
        if rows.min() < -len(self) or rows.max() >= len(self):
            raise IndexError(f"{self.path}: row out of range for {len(self)} images")
        rows = np.where(rows < 0, rows + len(self), rows)
        starts = np.flatnonzero(np.diff(rows, prepend=rows[0] - 2) != 1)  # first item of each run
        ends = np.append(starts[1:], len(rows))
        flat = out.reshape(len(rows), -1).view(np.uint8)
        for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
            got = os.preadv(self.fd, [flat[a:b]], self.offset + int(rows[a]) * self.row_bytes)
            if got != (b - a) * self.row_bytes:
                raise OSError(f"{self.path}: short read at row {rows[a]} (the store was changed?)")
        return out

    def __getstate__(self) -> dict:  # a process that unpickles it opens the file itself
        return {"path": self.path}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["path"])

    def __del__(self) -> None:
        if getattr(self, "fd", None) is not None:
            os.close(self.fd)
            self.fd = None


@dataclass(frozen=True)
class Split:
    """Usable images of one split: rows of the store, labels as class indices (-1 when unlabeled)."""

    index: np.ndarray  # (N,) int64 rows of images.npy
    labels: np.ndarray  # (N,) int64
    # (N,) str each, Arrow-backed when loaded: 64 bytes a hash, where a numpy '<U64' takes 256
    sha256: np.ndarray | pd.api.extensions.ExtensionArray
    paths: np.ndarray | pd.api.extensions.ExtensionArray  # relative to the split folder

    def subset(self, mask: np.ndarray) -> Split:
        """The images where `mask` (a boolean array, or row positions) holds, in order."""
        return Split(self.index[mask], self.labels[mask], self.sha256[mask], self.paths[mask])


# The manifest's columns a Split is made of
SPLIT_COLUMNS = ["split", "status", "label", "index", "sha256", "path"]


@dataclass(frozen=True)
class Prepared:
    directory: Path
    images: ImageFile  # (N, H, W, C) uint8, read on demand
    classes: list[str]
    stats: dict[str, list[float]]  # per-channel mean and std in [0, 1]

    def split(self, name: str) -> Split:
        """The usable (status ok) images of split `name`, in manifest order. Only that split's rows and the
        columns of a Split are read: a stage that trains on the labeled images does not hold the manifest
        rows of a million unlabeled ones (docs/scale.md)."""
        filters = [("split", "==", name), ("status", "==", "ok")]
        table = pq.read_table(self.directory / MANIFEST, columns=SPLIT_COLUMNS, filters=filters)
        manifest = table.to_pandas()
        labels = pd.Index(self.classes).get_indexer(manifest["label"])  # -1: none, or not a known class
        return Split(
            index=manifest["index"].to_numpy(np.int64),
            labels=labels.astype(np.int64),
            sha256=manifest["sha256"].array,
            paths=manifest["path"].array,
        )


def load_prepared(directory: str | Path) -> Prepared:
    directory = Path(directory)
    missing = [n for n in (MANIFEST, IMAGES, CLASSES, STATS) if not (directory / n).is_file()]
    if missing:
        raise FileNotFoundError(f"prepared store {directory} lacks {missing}; run the prepare stage first")
    absent = set(SPLIT_COLUMNS) - set(pq.read_schema(directory / MANIFEST).names)  # unreadable: raises here
    if absent:
        raise ValueError(f"{directory / MANIFEST} lacks the column(s) {sorted(absent)}; run prepare again")
    return Prepared(
        directory=directory,
        images=ImageFile(directory / IMAGES),
        classes=json.loads((directory / CLASSES).read_text()),
        stats=json.loads((directory / STATS).read_text()),
    )
