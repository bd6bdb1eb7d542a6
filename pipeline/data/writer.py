"""Writing a store: images appended to images.npy with constant memory, and a folder replaced all at once.

`staged_directory` makes the replacement safe to interrupt: a reader of the folder sees the old contents or
the new ones, never a mix.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from pipeline.data.store import IMAGES


def sibling_dir(out_dir: Path, kind: str) -> Path:
    return out_dir.with_name(f".{out_dir.name}.{kind}")


@contextmanager
def staged_directory(out_dir: Path) -> Iterator[Path]:
    """Write a folder's new contents into a staging folder, then swap it in with two renames.

    Killed while writing: `out_dir` is untouched. Killed between the renames: only `.<name>.old` is left
    (the next prepare reads it as its decode cache). Never a mix of old and new files.
    """
    staging, old = sibling_dir(out_dir, "partial"), sibling_dir(out_dir, "old")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        yield staging
    except Exception:  # refused (DataError) or failed: nothing of this run is left behind
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)
    if out_dir.exists():
        os.replace(out_dir, old)
    os.replace(staging, out_dir)
    shutil.rmtree(old, ignore_errors=True)


class StoreWriter:
    """Appends decoded images to `images.npy` in `folder` by plain file writes, a chunk at a time.

    Memory stays flat in the number of images: the pixels go to the file, not to a list, nor through a
    memory map (whose written pages would count as the process's own). For the channel statistics it keeps,
    per image, the per-channel sum and sum of squares of the pixel values as exact integers.
    """

    def __init__(self, folder: Path, image_size: int, channels: int, chunk: int = 4096):
        self.path, self.shape = folder / IMAGES, (image_size, image_size, channels)
        self.raw = open(folder / ".images.raw", "wb")  # noqa: SIM115 - closed in finish()
        self.buffer = np.empty((chunk, *self.shape), np.uint8)
        self.buffer_sums = np.empty((chunk, 2, channels), np.int64)  # per image: sum, sum of squares
        self.filled, self.count = 0, 0
        self.sums: list[np.ndarray] = []  # (chunk, 2, C) blocks, not a small array per image

    def append(self, pixels: np.ndarray) -> int:
        """Store one (H, W, C) uint8 image; returns its row in images.npy."""
        values = pixels.reshape(-1, pixels.shape[-1]).astype(np.int64)
        self.buffer[self.filled] = pixels
        self.buffer_sums[self.filled] = values.sum(axis=0), (values * values).sum(axis=0)
        self.filled += 1
        if self.filled == len(self.buffer):
            self._flush()
        self.count += 1
        return self.count - 1

    def _flush(self) -> None:
        self.raw.write(self.buffer[: self.filled].tobytes())
        self.sums.append(self.buffer_sums[: self.filled].copy())
        self.filled = 0

    def finish(self) -> None:
        """Write images.npy: its header, then the appended bytes."""
        self._flush()
        self.raw.close()
        shape = (self.count, *self.shape)
        header = np.lib.format.open_memmap(self.path, mode="w+", dtype=np.uint8, shape=shape)
        offset = header.offset
        del header  # only the header was written; the pixels go in below, by plain writes
        with open(self.raw.name, "rb") as src, open(self.path, "r+b") as dst:
            dst.seek(offset)
            shutil.copyfileobj(src, dst, 16 * 2**20)
        os.unlink(self.raw.name)

    def channel_stats(self, rows: np.ndarray) -> dict[str, list[float]]:
        """Mean and std per channel, in [0, 1], over the images at `rows`, from exact integer sums:
        mean = S / (255 n), std = sqrt(n Q - S^2) / (255 n), with S and Q the sums of values and squares.
        `rows` must not be empty (prepare refuses a store with nothing to train on before asking)."""
        n = len(rows) * self.shape[0] * self.shape[1]  # pixels per channel
        sums = np.concatenate(self.sums)[rows].sum(axis=0)  # (2, C) int64: exact
        total, squares = ([int(x) for x in row] for row in sums)
        mean = [t / (255 * n) for t in total]
        std = [(n * q - t * t) ** 0.5 / (255 * n) for t, q in zip(total, squares, strict=True)]
        return {"mean": mean, "std": [max(s, 1e-3) for s in std]}
