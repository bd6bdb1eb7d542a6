import numpy as np
import pytest
import torch

from pipeline.metrics import (
    confusion_matrix,
    effective_rank,
    expected_calibration_error,
    fpr_at_tpr,
    knn_accuracy,
    ood_auroc,
    reliability_bins,
)


def test_ece_hand_computed():
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.8, 0.2]])
    labels = np.array([0, 1, 0])
    # One occupied bin (0.5, 1]: accuracy 2/3, mean confidence 0.7667 -> ECE 0.1.
    assert expected_calibration_error(probs, labels, bins=2) == pytest.approx(0.1, abs=1e-9)


def test_ece_zero_when_confidence_equals_accuracy():
    probs = np.array([[0.5, 0.5]] * 4)
    labels = np.array([0, 1, 0, 1])  # argmax is 0: right half of the time, at confidence 0.5
    assert expected_calibration_error(probs, labels, bins=10) == pytest.approx(0.0)


def test_reliability_bins_hand_computed():
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.8, 0.2], [0.3, 0.7]])
    labels = np.array([0, 1, 0, 1])
    centers, accuracy, share = reliability_bins(probs, labels, bins=2)
    # Bin (0, 0.5] is empty; bin (0.5, 1] holds all four, three of them right.
    assert centers.tolist() == [0.25, 0.75]
    assert accuracy.tolist() == [0.0, 0.75] and share.tolist() == [0.0, 1.0]


def test_confusion_matrix_rows_are_true_classes():
    cm = confusion_matrix(np.array([0, 1, 1, 2]), np.array([0, 0, 1, 2]), 3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [0, 0, 1]]


def test_effective_rank_isotropic_vs_collapsed():
    g = torch.Generator().manual_seed(0)
    iso = torch.randn(4000, 8, generator=g)
    line = torch.randn(4000, 1, generator=g) * torch.ones(1, 8)
    assert effective_rank(iso) == pytest.approx(8, rel=0.05)
    assert effective_rank(line) == pytest.approx(1, abs=0.01)


def test_knn_accuracy_on_separable_clusters():
    train = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    labels = torch.tensor([0, 0, 1, 1])
    test = torch.tensor([[1.0, 0.2], [0.2, 1.0]])
    assert knn_accuracy(train, labels, test, torch.tensor([0, 1]), k=2) == 1.0
    assert knn_accuracy(train, labels, test, torch.tensor([1, 0]), k=2) == 0.0


@pytest.mark.slow
def test_linear_probe_separates_linearly_separable_features():
    from pipeline.metrics import linear_probe_accuracy

    g = torch.Generator().manual_seed(0)
    centers = torch.tensor([[3.0, 0.0], [-3.0, 0.0], [0.0, 3.0]])
    labels = torch.arange(3).repeat(20)
    features = centers[labels] + 0.3 * torch.randn(60, 2, generator=g)
    assert linear_probe_accuracy(features[:30], labels[:30], features[30:], labels[30:]) == 1.0
    shuffled = labels[torch.randperm(60, generator=g)]
    assert linear_probe_accuracy(features[:30], shuffled[:30], features[30:], labels[30:]) < 0.8


def naive_auroc(id_scores, ood_scores):
    pairs = [(o > i) + 0.5 * (o == i) for o in ood_scores for i in id_scores]
    return sum(pairs) / len(pairs)


def test_ood_auroc_matches_pairwise_count_with_ties():
    id_scores, ood_scores = np.array([0.1, 0.4, 0.4, 0.7]), np.array([0.4, 0.8, 0.2])
    assert ood_auroc(id_scores, ood_scores) == pytest.approx(naive_auroc(id_scores, ood_scores))
    assert ood_auroc(np.array([0.0, 0.1]), np.array([0.5, 0.9])) == 1.0
    assert ood_auroc(np.array([0.5, 0.9]), np.array([0.0, 0.1])) == 0.0


def test_fpr_at_95_tpr():
    id_scores = np.arange(100, dtype=float)  # the threshold keeping 95 % of them is 95
    ood_scores = np.array([10.0, 94.0, 95.0, 96.0, 200.0])
    assert fpr_at_tpr(id_scores, ood_scores, 0.95) == pytest.approx(3 / 5)
