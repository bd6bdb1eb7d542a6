"""Per-image metadata in columns, so that a million images cost their bytes rather than a Python object each.

`Columns` collects rows one at a time and keeps them as Arrow arrays (a chunk of pending Python values at a
time). `StringLookup` finds the row of a string (a file path, a content hash) among a million in 8 bytes a
row: sorted 64-bit keys searched by bisection, where a dict would spend over 100 bytes a row.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa


class Columns:
    """Rows appended one at a time, held as one Arrow array per column and `chunk` rows; `frame()` gives them
    as a DataFrame (strings Arrow-backed, integers numpy) with the columns in `schema`'s order."""

    def __init__(self, schema: dict[str, pa.DataType], chunk: int = 65_536):
        self.schema, self.chunk = schema, chunk
        self.pending: dict[str, list] = {name: [] for name in schema}
        self.chunks: dict[str, list[pa.Array]] = {name: [] for name in schema}
        self.rows = 0

    def append(self, row: dict[str, Any]) -> None:
        for name, values in self.pending.items():
            values.append(row[name])
        self.rows += 1
        if self.rows % self.chunk == 0:
            self._flush()

    def _flush(self) -> None:
        for name, values in self.pending.items():
            if values:
                self.chunks[name].append(pa.array(values, type=self.schema[name]))
            self.pending[name] = []

    def frame(self) -> pd.DataFrame:
        self._flush()
        arrays = {
            name: pa.chunked_array(chunks, type=self.schema[name]) for name, chunks in self.chunks.items()
        }
        return pa.table(arrays).to_pandas()


def string_key(text: str) -> int:
    """A 64-bit key of a string (blake2b): equal strings, equal keys; a collision is checked by the caller."""
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


class StringLookup:
    """The first row of each string in `strings` (a column of a frame), found in O(log n) by its 64-bit key.

    Rows whose keys collide are told apart by comparing the strings themselves, so a lookup is never wrong.
    """

    def __init__(self, strings: pd.Series):
        self.strings = strings.reset_index(drop=True).array
        keys = np.fromiter((string_key(s) for s in self.strings), dtype=np.uint64, count=len(self.strings))
        self.order = np.argsort(keys, kind="stable")  # stable: among equal strings, the first row comes first
        self.keys = keys[self.order]

    def __len__(self) -> int:
        return len(self.strings)

    def first_rows(self) -> np.ndarray:
        """(n,) for each row, the first row holding the same string (the row itself for a first)."""
        n = len(self.keys)
        if n == 0:
            return np.zeros(0, np.int64)
        starts = np.flatnonzero(np.r_[True, self.keys[1:] != self.keys[:-1]])  # runs of equal keys
        first = np.empty(n, np.int64)
        first[self.order] = np.repeat(self.order[starts], np.diff(np.r_[starts, n]))
        later = np.flatnonzero(first != np.arange(n))
        collided = later[np.asarray(self.strings[later] != self.strings[first[later]], dtype=bool)]
        for row in collided:  # equal keys of unequal strings: found by comparing the strings
            first[row] = self.find(self.strings[row])
        return first

    def find(self, text: str) -> int | None:
        """The first row holding `text`, or None."""
        key = np.uint64(string_key(text))
        i = int(np.searchsorted(self.keys, key, side="left"))
        while i < len(self.keys) and self.keys[i] == key:
            row = int(self.order[i])
            if self.strings[row] == text:
                return row
            i += 1
        return None
