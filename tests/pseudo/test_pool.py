"""The OOD filter's decision on a pool: a hard cut when it tells the pool from held-out labeled images, a
soft down-weighting that rejects nothing when it cannot (ood.min_separation)."""

import numpy as np
import pytest
import torch

from pipeline.config.pseudolabel import OODConfig, PropagationConfig
from pipeline.data.store import Split
from pipeline.inference import encode
from pipeline.models import Architecture, build_classifier
from pipeline.pseudo.pool import UNLIKE_LABELED, OODDecision, align_pool, filter_ood


def stripes(rng: np.random.Generator, n: int) -> np.ndarray:
    """Horizontal stripes, random phase and noise: the in-distribution images (n, 12, 12, 1)."""
    rows = np.arange(12)[None, :, None, None]
    phase = rng.integers(0, 4, (n, 1, 1, 1))
    return (np.where((rows + phase) % 4 < 2, 200, 40) + rng.integers(0, 30, (n, 12, 12, 1))).astype(np.uint8)


def speckle(rng: np.random.Generator, n: int) -> np.ndarray:
    """Uniform noise: out of distribution."""
    return rng.integers(0, 256, (n, 12, 12, 1)).astype(np.uint8)


GRAPH = PropagationConfig(
    weight=1.0, features="teacher", temperature=0.25, k=10, alpha=0.99, exact_max=100_000
)


@pytest.fixture
def setup():
    torch.manual_seed(0)
    model = build_classifier(Architecture(channels=1, width=8, depth=1, num_classes=2))
    rng = np.random.default_rng(0)
    images = np.concatenate([stripes(rng, 40), stripes(rng, 60), speckle(rng, 60)])
    labels = np.arange(40) % 2
    labeled = Split(np.arange(40), labels, np.array([str(i) for i in range(40)]), np.array(["x.png"] * 40))
    cfg = OODConfig(method="knn", k=1, keep_quantile=0.9, shrinkage=0.5, folds=4, min_separation=0.6)
    return model, images, labeled, cfg


def decide(model, images, labeled, cfg, pool: np.ndarray) -> OODDecision:
    features = encode(model.encoder, images, pool)
    return filter_ood(
        cfg=cfg, graph=GRAPH, pool_features=features, teacher=model, encoder=model.encoder, images=images,
        labeled=labeled, num_classes=2, batch_size=64, seed=0,
    )  # fmt: skip


@pytest.mark.parametrize("method", ["knn", "propagation"])
def test_a_filter_that_separates_rejects_the_out_of_distribution_images(setup, method):
    model, images, labeled, cfg = setup
    ood = decide(
        model, images, labeled, cfg.model_copy(update={"method": method}), np.arange(40, 160)
    )  # 60 stripes, then 60 speckles
    assert not ood.soft and ood.separation >= 0.6
    assert ood.in_distribution[60:].mean() < 0.2 and ood.in_distribution[:60].mean() > 0.7
    assert (ood.weight == 1).all()
    stats = ood.stats()
    assert stats["ood/soft"] == 0 and stats["ood/separation_auroc"] == pytest.approx(ood.separation)
    assert stats["ood/threshold_low"] <= stats["ood/threshold"] <= stats["ood/threshold_high"]
    rejected = (~ood.in_distribution).mean()
    assert stats["ood/rejected_rate_at_high"] <= rejected <= stats["ood/rejected_rate_at_low"]


def test_a_filter_that_cannot_tell_the_pool_apart_falls_back_to_soft_weights(setup):
    model, images, labeled, cfg = setup
    ood = decide(model, images, labeled, cfg, np.arange(40, 100))  # stripes only: like the labeled images
    assert ood.separation < 0.6 and ood.soft
    assert ood.in_distribution.all()  # nothing rejected at random
    past = ood.scores > ood.threshold
    assert (ood.weight[~past] == 1).all() and (ood.weight[past] < 1).any()  # fading out past the threshold
    order = np.argsort(ood.scores)
    assert (np.diff(ood.weight[order]) <= 0).all() and ood.weight.min() >= 0  # lower the more out
    assert ood.stats()["ood/soft"] == 1
    assert ood.warnings("r1") == []  # a pool like the labeled images: nothing to warn about


def test_a_pool_of_only_unlabeled_kinds_of_image_is_warned_about(setup):
    model, images, labeled, cfg = setup
    ood = decide(model, images, labeled, cfg, np.arange(100, 160))  # speckles only
    (warning,) = ood.warnings("r2")
    assert ood.separation >= UNLIKE_LABELED and f"separation AUROC {ood.separation:.2f}" in warning
    assert warning.startswith("r2: the pool looks unlike the labeled images") and "r2.parquet" in warning


def test_the_filter_off_keeps_everything_and_logs_minus_one(setup):
    model, images, labeled, cfg = setup
    ood = decide(model, images, labeled, cfg.model_copy(update={"method": "none"}), np.arange(40, 160))
    assert ood.in_distribution.all() and (ood.weight == 1).all()
    stats = ood.stats()
    assert stats["ood/threshold"] == stats["ood/threshold_low"] == stats["ood/separation_auroc"] == -1
    assert ood.warnings("r1") == []


def test_pool_alignment_hand_computed_and_its_mean_over_kept_images_only():
    probs = np.array([[0.8, 0.2], [0.6, 0.4], [0.0, 1.0]])
    keep = np.array([True, True, False])  # the third, out of distribution, does not move the mean
    aligned = align_pool(probs, keep, "uniform", np.array([0, 1]), 2)  # mean over kept: [0.7, 0.3]
    row0 = np.array([0.8 * 0.5 / 0.7, 0.2 * 0.5 / 0.3])
    row1 = np.array([0.6 * 0.5 / 0.7, 0.4 * 0.5 / 0.3])
    assert aligned[0] == pytest.approx(row0 / row0.sum()) and aligned[1] == pytest.approx(row1 / row1.sum())
    assert aligned[1].argmax() == 1  # the under-predicted class wins the close call
    labeled = align_pool(probs, keep, "labeled", np.array([0, 0, 0, 1]), 2)  # prior [0.75, 0.25]
    row1 = np.array([0.6 * 0.75 / 0.7, 0.4 * 0.25 / 0.3])
    assert labeled[1] == pytest.approx(row1 / row1.sum())
    assert align_pool(probs, keep, "none", np.array([0, 1]), 2) is probs


def test_pool_alignment_moves_the_predicted_class_shares_towards_the_prior():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2000, 4)) + np.array([1.0, 0.5, 0.0, -1.0])  # drifted towards class 0
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    before = np.bincount(probs.argmax(axis=1), minlength=4) / 2000
    after = (
        np.bincount(align_pool(probs, np.ones(2000, bool), "uniform", np.array([]), 4).argmax(axis=1)) / 2000
    )
    assert np.abs(after - 0.25).sum() < np.abs(before - 0.25).sum() / 2
