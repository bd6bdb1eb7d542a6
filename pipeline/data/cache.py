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

from pipeline.data.scan import ScannedFile
from pipeline.data.store import DECODER, IMAGES, MANIFEST, ImageFile
from pipeline.files import atomic_write


class KnownHashes:
    """The sha256 of each file the last prepare read, with its size, mtime and ctime (ns), in `path`.

    A file whose stat is unchanged is not read again: the check git and DVC use. The table stays out of the
    store, which is a DVC output, because stat times differ between clones; without it, every file is read.
    """

    def __init__(self, path: Path | None):
        self.path, self.known, self.seen = path, {}, []
        try:
            frame = pd.read_parquet(path)
            columns = [frame[c].tolist() for c in ("split", "path", "size", "mtime_ns", "ctime_ns", "sha256")]
            self.known = {(split, path): tuple(rest) for split, path, *rest in zip(*columns, strict=True)}
        except (OSError, ValueError, AttributeError, TypeError):
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
        entry = self.known.get((f.split, f.path))
        return entry[3] if stat is not None and entry is not None and entry[:3] == stat else None

    def record(self, f: ScannedFile, stat: tuple[int, int, int] | None, digest: str) -> None:
        if stat is not None:
            self.seen.append((f.split, f.path, *stat, digest))

    def save(self) -> None:
        if self.path is not None:
            columns = ["split", "path", "size", "mtime_ns", "ctime_ns", "sha256"]
            frame = pd.DataFrame(self.seen, columns=columns)
            atomic_write(self.path, lambda p: frame.to_parquet(p, index=False))


class DecodeCache:
    """The previous store in `out_dir` by content hash: pixels (if made by `decoder`), first versions."""

    def __init__(self, out_dir: Path, decoder: str):
        self.rows: dict[str, tuple] = {}  # sha256 -> (index, width, height, mode)
        self.first_version: dict[str, str] = {}
        self.images: ImageFile | None = None
        try:
            manifest = pd.read_parquet(out_dir / MANIFEST)
            same_decoder = json.loads((out_dir / DECODER).read_text())["decoder"] == decoder
            images = ImageFile(out_dir / IMAGES)
        except (OSError, ValueError, KeyError):
            return  # no previous store (or an unreadable one): decode everything
        if "first_version" in manifest:  # a real version only; the first row of repeated bytes wins
            known = manifest[(manifest["sha256"] != "") & ~manifest["first_version"].isin(["", "untracked"])]
            known = known.drop_duplicates("sha256")
            self.first_version = dict(zip(known["sha256"], known["first_version"], strict=True))
        if same_decoder:
            stored = manifest[manifest["index"] >= 0].drop_duplicates("sha256")
            columns = [stored[c].tolist() for c in ("sha256", "index", "width", "height", "mode")]
            self.rows = {sha: tuple(rest) for sha, *rest in zip(*columns, strict=True)}
            self.images = images

    def get(self, sha256: str) -> tuple[np.ndarray, tuple[int, int], str] | None:
        row = self.rows.get(sha256)
        if row is None or self.images is None:
            return None
        index, width, height, mode = row
        return self.images[index], (width, height), mode
