import gzip

import numpy as np
import pandas as pd
import pytest

from pipeline.data.demo import export_demo, read_idx, render_digits, split_indices


def write_idx(path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def fake_idx_dir(idx, n_train: int, n_test: int):
    """The four Fashion-MNIST IDX files with random pixels and labels 0..9 in turn."""
    rng = np.random.default_rng(0)
    idx.mkdir()
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(idx / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(idx / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    return idx


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
    idx = fake_idx_dir(tmp_path / "idx", n_train=200, n_test=30)
    counts = export_demo(tmp_path / "data", idx, labels_per_class=2, n_unlabeled=50, seed=0)
    assert counts == {"labeled": 20, "unlabeled": 50, "test": 30}
    assert len(list((tmp_path / "data/labeled").glob("*/*.png"))) == 20
    analysis = pd.read_csv(tmp_path / "data/analysis.csv")
    assert len(analysis) == 50 and all((tmp_path / "data/unlabeled" / p).is_file() for p in analysis["path"])
    with pytest.raises(FileExistsError, match="--force"):
        export_demo(tmp_path / "data", idx, labels_per_class=2, n_unlabeled=50, seed=0)


def test_default_split_is_the_one_the_committed_demo_data_was_made_with():
    # Values from the split before class mismatch existed: the demo's data hashes depend on them.
    labeled, unlabeled = split_indices(np.repeat(np.arange(10), 50), 4, 300, seed=3)
    assert labeled[:8].tolist() == [4, 8, 11, 38, 51, 54, 66, 77] and int(labeled.sum()) == 9952
    assert unlabeled[:12].tolist() == [0, 2, 3, 6, 9, 12, 13, 15, 16, 17, 19, 20]
    assert int(unlabeled.sum()) == 75452


def test_class_mismatch_split_draws_the_asked_share_from_other_classes():
    labels = np.repeat(np.arange(10), 50)
    labeled, unlabeled = split_indices(labels, 4, 100, seed=0, classes=[0, 1, 2, 3, 4, 5], mismatch=0.3)
    assert set(labels[labeled]) == {0, 1, 2, 3, 4, 5}
    assert (labels[unlabeled] >= 6).sum() == 30 and len(unlabeled) == 100
    with pytest.raises(ValueError, match="other classes, only 200 remain"):
        split_indices(labels, 4, 300, seed=0, classes=[0, 1, 2, 3, 4, 5], mismatch=1.0)


def test_export_with_mismatch_and_far_ood_labels_the_truth(tmp_path):
    idx = fake_idx_dir(tmp_path / "idx", n_train=300, n_test=40)
    known = ["t-shirt_top", "trouser", "pullover"]
    counts = export_demo(tmp_path / "data", idx, 2, 40, classes=known, mismatch=0.5, far_ood=10)
    assert counts == {"labeled": 6, "unlabeled": 50, "test": 12}
    assert sorted(p.name for p in (tmp_path / "data/labeled").iterdir()) == sorted(known)
    assert sorted(p.name for p in (tmp_path / "data/test").iterdir()) == sorted(known)
    labels = pd.read_csv(tmp_path / "data/analysis.csv")["label"]
    assert labels.isin(known).sum() == 20 and (labels == "ood:digit").sum() == 10
    with pytest.raises(ValueError, match="mismatch needs --classes"):
        export_demo(tmp_path / "other", idx, 2, 40, mismatch=0.5)


def test_rendered_digits_are_seeded_and_not_blank():
    digits = render_digits(5, 28, seed=0)
    assert digits.shape == (5, 28, 28) and digits.dtype == np.uint8
    assert np.array_equal(digits, render_digits(5, 28, seed=0))
    assert (digits.reshape(5, -1).max(axis=1) > 128).all()
