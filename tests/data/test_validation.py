from dataclasses import replace

import numpy as np

from pipeline.config.common import ValidationConfig
from pipeline.data.store import Split
from pipeline.data.validation import split_validation, stratified_folds


def labeled_split(per_class: list[int]) -> Split:
    labels = np.concatenate([np.full(n, c) for c, n in enumerate(per_class)]).astype(np.int64)
    sha = np.array([f"{i:064x}" for i in range(len(labels))])
    return Split(
        np.arange(len(labels)) + 100, labels, sha, np.array([f"{i}.png" for i in range(len(labels))])
    )


def test_validation_holds_out_per_class_images_of_every_class():
    labeled = labeled_split([20, 30, 15])
    train, val = split_validation(labeled, ValidationConfig(per_class=5, min_train_per_class=10), seed=0)
    assert np.bincount(val.labels).tolist() == [5, 5, 5]
    assert np.bincount(train.labels).tolist() == [15, 25, 10]
    assert not set(train.index) & set(val.index) and len(train.index) + len(val.index) == 65


def test_no_validation_when_a_class_would_keep_too_few_to_train_on():
    labeled = labeled_split([20, 14])
    train, val = split_validation(labeled, ValidationConfig(per_class=5, min_train_per_class=10), seed=0)
    assert val is None and train is labeled
    _, val = split_validation(labeled, ValidationConfig(per_class=0, min_train_per_class=1), seed=0)
    assert val is None


def test_the_choice_depends_on_contents_and_seed_not_on_order():
    labeled = labeled_split([20, 20])
    cfg = ValidationConfig(per_class=3, min_train_per_class=5)
    _, val = split_validation(labeled, cfg, seed=0)
    order = np.random.default_rng(1).permutation(40)
    shuffled = replace(labeled, index=labeled.index[order], labels=labeled.labels[order],
                       sha256=labeled.sha256[order], paths=labeled.paths[order])  # fmt: skip
    _, val_shuffled = split_validation(shuffled, cfg, seed=0)
    assert set(val.sha256) == set(val_shuffled.sha256)
    _, other_seed = split_validation(labeled, cfg, seed=1)
    assert set(val.sha256) != set(other_seed.sha256)


def test_stratified_folds_spread_every_class():
    labels = np.repeat(np.arange(5), 4)
    fold = stratified_folds(labels, 4, seed=0)
    for c in range(5):
        assert sorted(fold[labels == c]) == [0, 1, 2, 3]
    assert np.bincount(fold).tolist() == [5, 5, 5, 5]
