"""Per-image metadata in columns: rows collected in Arrow chunks, strings found by 64-bit keys."""

import numpy as np
import pandas as pd
import pyarrow as pa

from pipeline.data import columns
from pipeline.data.columns import Columns, StringLookup

SCHEMA = {"path": pa.string(), "index": pa.int64()}


def test_rows_across_chunks_come_back_in_order_with_their_types():
    built = Columns(SCHEMA, chunk=2)
    rows = [{"path": f"{i}.png", "index": i * 10} for i in range(5)]  # two full chunks and a pending row
    for row in rows:
        built.append(row)
    frame = built.frame()
    assert frame["path"].tolist() == [r["path"] for r in rows]
    assert frame["index"].tolist() == [0, 10, 20, 30, 40]
    assert frame["index"].dtype == np.int64 and pd.api.types.is_string_dtype(frame["path"])
    assert frame.equals(pd.DataFrame(rows))  # what the lists of Python values made before


def test_no_rows_give_an_empty_frame_with_the_columns():
    frame = Columns(SCHEMA).frame()
    assert list(frame.columns) == ["path", "index"] and len(frame) == 0


def test_lookup_finds_the_first_row_of_a_string_and_none_for_an_absent_one():
    lookup = StringLookup(pd.Series(["b", "a", "c", "a"], index=[7, 8, 9, 10]))
    assert [lookup.find(s) for s in ("a", "b", "c", "z")] == [1, 0, 2, None]


def test_lookup_tells_colliding_keys_apart_by_the_strings(monkeypatch):
    monkeypatch.setattr(columns, "string_key", lambda text: 42)  # all keys collide, as two 64-bit keys could
    lookup = StringLookup(pd.Series(["x", "y", "z"]))
    assert [lookup.find(s) for s in ("x", "y", "z", "w")] == [0, 1, 2, None]


def test_first_rows_point_each_row_at_the_first_equal_string_even_when_keys_collide(monkeypatch):
    strings = pd.Series(["a", "b", "a", "c", "b", "a"], dtype="str", index=[5, 6, 7, 8, 9, 10])
    assert StringLookup(strings).first_rows().tolist() == [0, 1, 0, 3, 1, 0]
    assert StringLookup(pd.Series([], dtype="str")).first_rows().tolist() == []
    monkeypatch.setattr(columns, "string_key", lambda text: 42)  # all keys collide, as two 64-bit keys could
    assert StringLookup(strings).first_rows().tolist() == [0, 1, 0, 3, 1, 0]
