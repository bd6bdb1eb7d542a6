import gzip

import numpy as np
import pandas as pd
import pytest

from pipeline.data.demo import export_demo, read_idx, split_indices


def write_idx(path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_read_idx_roundtrip_and_bad_magic(tmp_path):
    array = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    write_idx(tmp_path / "x.gz", array)
    assert np.array_equal(read_idx(tmp_path / "x.gz"), array)
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="not an unsigned-byte IDX"):
        read_idx(tmp_path / "bad")


def test_split_is_seeded_balanced_and_disjoint():
    labels = np.repeat(np.arange(10), 50)
    labeled, unlabeled = split_indices(labels, 4, 300, seed=3)
    assert np.bincount(labels[labeled], minlength=10).tolist() == [4] * 10
    assert len(unlabeled) == 300 and not set(labeled) & set(unlabeled)
    again = split_indices(labels, 4, 300, seed=3)
    assert np.array_equal(again[0], labeled) and np.array_equal(again[1], unlabeled)


def test_export_writes_layout_and_analysis_file(tmp_path):
    rng = np.random.default_rng(0)
    idx = tmp_path / "idx"
    idx.mkdir()
    for prefix, n in (("train", 200), ("t10k", 30)):
        write_idx(idx / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(idx / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    counts = export_demo(tmp_path / "data", idx, labels_per_class=2, n_unlabeled=50, seed=0)
    assert counts == {"labeled": 20, "unlabeled": 50, "test": 30}
    assert len(list((tmp_path / "data/labeled").glob("*/*.png"))) == 20
    analysis = pd.read_csv(tmp_path / "data/analysis.csv")
    assert len(analysis) == 50 and all((tmp_path / "data/unlabeled" / p).is_file() for p in analysis["path"])
    with pytest.raises(FileExistsError, match="--force"):
        export_demo(tmp_path / "data", idx, labels_per_class=2, n_unlabeled=50, seed=0)
