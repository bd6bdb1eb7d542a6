import math

import numpy as np
import pytest

from pipeline.pseudo.select import (
    class_balanced_copies,
    flexmatch_thresholds,
    freematch_thresholds,
    select_pseudo_labels,
    softmatch_weights,
    softmax,
)


def test_softmax_temperature_sharpens():
    logits = np.array([[2.0, 1.0, 0.0]])
    assert softmax(logits).sum() == pytest.approx(1.0)
    assert softmax(logits, 0.5).max() > softmax(logits, 1.0).max() > softmax(logits, 2.0).max()


def test_threshold_ood_and_weights():
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.95, 0.05]])
    in_dist = np.array([True, True, True, False])
    sel = select_pseudo_labels(probs, in_dist, "threshold", threshold=0.7, weighting="confidence")
    assert sel.accepted.tolist() == [True, False, True, False]
    assert sel.pseudo_label.tolist() == [0, 0, 1, 0]
    assert sel.weight.tolist() == pytest.approx([0.9, 0.0, 0.8, 0.0])
    assert sel.copies.tolist() == [1, 0, 1, 0]
    assert sel.reason.tolist() == ["accepted", "low_confidence", "accepted", "ood"]
    uniform = select_pseudo_labels(probs, in_dist, "threshold", 0.7, "uniform")
    assert uniform.weight.tolist() == [1.0, 0.0, 1.0, 0.0]


def test_threshold_is_inclusive():
    sel = select_pseudo_labels(np.array([[0.7, 0.3]]), np.array([True]), "threshold", 0.7, "uniform")
    assert sel.accepted.tolist() == [True]


def test_unknown_mode_is_named():
    with pytest.raises(ValueError, match="unknown pseudo-label mode 'fixmatch'"):
        select_pseudo_labels(np.array([[0.7, 0.3]]), np.array([True]), "fixmatch", 0.7, "uniform")


def test_flexmatch_thresholds_hand_computed():
    # 6 samples, 3 classes, tau = 0.8. Confident (> 0.8): two of class 0, one of class 1, none of class 2.
    probs = np.array(
        [[0.9, 0.05, 0.05], [0.85, 0.1, 0.05], [0.1, 0.85, 0.05], [0.5, 0.3, 0.2], [0.2, 0.7, 0.1],
         [0.1, 0.2, 0.7]]
    )  # fmt: skip
    # sigma = [2, 1, 0]; unused = 6 - 3 = 3 > max sigma = 2, so beta = sigma / 3 (warm-up).
    beta = np.array([2 / 3, 1 / 3, 0.0])
    expected = beta / (2 - beta) * 0.8  # [0.4, 0.16, 0]
    assert flexmatch_thresholds(probs, 0.8) == pytest.approx(expected)
    # Without warm-up the best-learned class gets the full threshold: beta = sigma / max sigma = [1, .5, 0].
    assert flexmatch_thresholds(probs, 0.8, warmup=False) == pytest.approx([0.8, 0.5 / 1.5 * 0.8, 0.0])


def test_flexmatch_lowers_thresholds_of_hard_classes_only():
    rng = np.random.default_rng(0)
    easy = softmax(rng.normal(size=(200, 4)) + np.array([6.0, 0, 0, 0]))  # confidently class 0
    hard = softmax(rng.normal(size=(200, 4)) + np.array([0, 1.0, 0, 0]))  # unsure, mostly class 1
    thresholds = flexmatch_thresholds(np.concatenate([easy, hard]), 0.9, warmup=False)
    assert thresholds[0] == pytest.approx(0.9)
    assert (thresholds[1:] < 0.9).all()


def test_freematch_thresholds_hand_computed():
    probs = np.array([[0.8, 0.2], [0.6, 0.4], [0.3, 0.7]])
    tau = (0.8 + 0.6 + 0.7) / 3  # mean confidence = 0.7
    ptilde = np.array([1.7, 1.3]) / 3
    assert freematch_thresholds(probs) == pytest.approx(ptilde / ptilde.max() * tau)
    assert freematch_thresholds(probs)[0] == pytest.approx(0.7)  # the dominant class gets the global tau


def test_softmatch_weight_is_a_truncated_gaussian():
    confidence = np.array([0.2, 0.4, 0.6, 0.8, 1.0])
    mu, var = 0.6, np.var(confidence, ddof=1)  # var = 0.1
    w = softmatch_weights(confidence, n_sigma=2.0)
    assert w[2:].tolist() == [1.0, 1.0, 1.0]  # at or above the mean: full weight
    assert w[1] == pytest.approx(math.exp(-((0.4 - mu) ** 2) / (2 * var / 4)))  # exp(-0.8)
    assert w[0] == pytest.approx(math.exp(-((0.2 - mu) ** 2) / (2 * var / 4)))  # exp(-3.2)
    assert 0 < w[0] < w[1] < 1  # soft: lower confidence, lower weight, never exactly 0


def test_softmatch_mode_accepts_every_in_distribution_image():
    probs = np.array([[0.9, 0.1], [0.55, 0.45], [0.7, 0.3], [0.99, 0.01]])
    sel = select_pseudo_labels(probs, np.array([True, True, True, False]), "softmatch", 0.95, "uniform")
    assert sel.accepted.tolist() == [True, True, True, False]
    assert sel.weight[3] == 0.0 and sel.weight[0] == 1.0 and 0 < sel.weight[1] < sel.weight[2] <= 1


def test_class_balanced_keeps_the_most_confident_and_duplicates_short_classes():
    labels = np.array([0, 0, 0, 0, 1, 1])
    confidence = np.array([0.6, 0.9, 0.7, 0.8, 0.95, 0.5])
    eligible = np.ones(6, dtype=bool)
    copies = class_balanced_copies(labels, confidence, eligible, per_class=3, num_classes=2)
    # class 0: the three most confident (0.9, 0.8, 0.7) once, 0.6 dropped; class 1: 2 images fill 3 slots,
    # the more confident one twice.
    assert copies.tolist() == [0, 1, 1, 1, 2, 1]
    assert copies[labels == 0].sum() == copies[labels == 1].sum() == 3


def test_class_balanced_mode_reasons_and_default_quota():
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.3, 0.7], [0.55, 0.45], [0.1, 0.9]])
    in_dist = np.array([True, True, True, True, True, False])
    sel = select_pseudo_labels(probs, in_dist, "class_balanced", 0.6, "uniform")  # quota 5 // 2 = 2
    assert sel.copies.tolist() == [1, 1, 0, 2, 0, 0]
    assert sel.reason.tolist() == ["accepted", "accepted", "over_quota", "accepted", "low_confidence", "ood"]
