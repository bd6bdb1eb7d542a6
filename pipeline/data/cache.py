"""What makes `prepare` incremental: what the last run read, so that unchanged files are neither read nor
decoded again.

`KnownHashes` skips reading: the content hash of each file, trusted while its stat is unchanged.
`DecodeCache` skips decoding: the previous store, keyed by content hash, so renamed and moved files are
found too and removed files simply drop out. It is used only when made by the same decoder code at the same
size and mode (`decoder_id`), so the new store is exactly what a prepare from scratch would write.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from pipeline.data.columns import Columns, StringLookup
from pipeline.data.scan import ScannedFile
from pipeline.data.store import DECODER, IMAGES, MANIFEST, ImageFile
from pipeline.files import atomic_write

HASH_SCHEMA = {"split": pa.string(), "path": pa.string(), "size": pa.int64(), "mtime_ns": pa.int64(),
               "ctime_ns": pa.int64(), "sha256": pa.string()}  # fmt: skip


class KnownHashes:
    """The sha256 of each file the last prepare read, with its size, mtime and ctime (ns), in `path`.

    A file whose stat is unchanged is not read again: the check git and DVC use. The table stays out of the
    store, which is a DVC output, because stat times differ between clones; without it, every file is read.
    Both the last run's table and this run's are columns, found by `StringLookup` (docs/scale.md).
    """

    def __init__(self, path: Path | None):
        self.path, self.seen = path, Columns(HASH_SCHEMA)
        self.known: StringLookup | None = None  # split/path -> row of `stats` and `digests`
        self.stats, self.digests = np.zeros((0, 3), np.int64), pd.array([], dtype="str")
        try:
            frame = pd.read_parquet(path).dropna(subset=list(HASH_SCHEMA))  # a damaged row: read again
            self.stats = frame[["size", "mtime_ns", "ctime_ns"]].to_numpy(np.int64)
            self.digests = frame["sha256"].array
            self.known = StringLookup(frame["split"] + "/" + frame["path"])
        except (OSError, ValueError, AttributeError, TypeError, KeyError):
            pass  # no table (or an unreadable one): read every file

    def stat(self, f: ScannedFile) -> tuple[int, int, int] | None:
        """(size, mtime, ctime) of `f`, or None when unreadable or when no table is kept."""
        if self.path is None:
            return None
        try:
            st = os.stat(f.full)
        except OSError:
            return None
        return st.st_size, st.st_mtime_ns, st.st_ctime_ns

    def digest(self, f: ScannedFile, stat: tuple[int, int, int] | None) -> str | None:
        row = self.known.find(f"{f.split}/{f.path}") if stat is not None and self.known is not None else None
        return self.digests[row] if row is not None and tuple(self.stats[row].tolist()) == stat else None

    def record(self, f: ScannedFile, stat: tuple[int, int, int] | None, digest: str) -> None:
        if stat is not None:
            size, mtime_ns, ctime_ns = stat
            self.seen.append({"split": f.split, "path": f.path, "size": size, "mtime_ns": mtime_ns,
                              "ctime_ns": ctime_ns, "sha256": digest})  # fmt: skip

    def save(self) -> None:
        if self.path is not None:
            frame = self.seen.frame()
            atomic_write(self.path, lambda p: frame.to_parquet(p, index=False))


class DecodeCache:
    """The previous store in `out_dir` by content hash: pixels (if made by `decoder`), first versions."""

    def __init__(self, out_dir: Path, decoder: str):
        self.rows: StringLookup | None = None  # sha256 -> row of `stored` and `modes`
        self.stored = np.zeros((0, 3), np.int64)  # index, width, height of each stored image
        self.modes = pd.array([], dtype="str")
        self.versions: StringLookup | None = None  # sha256 -> row of `known_versions`
        self.known_versions = pd.array([], dtype="str")
        self.images: ImageFile | None = None
        try:
            manifest = pd.read_parquet(out_dir / MANIFEST)
            same_decoder = json.loads((out_dir / DECODER).read_text())["decoder"] == decoder
            images = ImageFile(out_dir / IMAGES)
            if "first_version" in manifest:  # a real version only; the first row of repeated bytes wins
                known = manifest.dropna(subset=["sha256", "first_version"])
                known = known[(known["sha256"] != "") & ~known["first_version"].isin(["", "untracked"])]
                self.versions = StringLookup(known["sha256"])
                self.known_versions = known["first_version"].array
            if same_decoder:
                # a row with a damaged field (null) is not reused: its file is decoded again
                stored = manifest.dropna(subset=["sha256", "index", "width", "height", "mode"])
                stored = stored[stored["index"] >= 0]
                self.stored = stored[["index", "width", "height"]].to_numpy(np.int64)
                self.modes, self.rows = stored["mode"].array, StringLookup(stored["sha256"])
                self.images = images
        except (OSError, ValueError, KeyError, TypeError):
            return  # no previous store (or an unreadable one): decode what it cannot give

    def first_version(self, sha256: str, default: str) -> str:
        """The data version in which these bytes first appeared, as the previous store recorded it."""
        row = self.versions.find(sha256) if self.versions is not None else None
        return default if row is None else self.known_versions[row]

    def get(self, sha256: str) -> tuple[np.ndarray, tuple[int, int], str] | None:
        row = self.rows.find(sha256) if self.rows is not None and self.images is not None else None
        if row is None:
            return None
        index, width, height = self.stored[row].tolist()
        return self.images[index], (width, height), self.modes[row]
