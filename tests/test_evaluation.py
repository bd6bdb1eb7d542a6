import numpy as np
import pytest

from pipeline import evaluation  # its `test_metrics` imported by name would be collected as a test


def test_test_metrics_accuracy_ece_and_confusion_by_hand():
    probs = np.array([[0.85, 0.15, 0.0], [0.2, 0.65, 0.15], [0.55, 0.35, 0.1], [0.1, 0.25, 0.65]])
    labels = np.array([0, 1, 1, 2])  # the third image (true 1) predicted 0
    metrics, confusion = evaluation.test_metrics(probs, labels, ece_bins=10)
    assert metrics["test/accuracy"] == 0.75 and metrics["test/images"] == 4.0
    # Confidences 0.85, 0.65, 0.55, 0.65 fall in bins (0.8, 0.9], (0.6, 0.7], (0.5, 0.6], (0.6, 0.7]:
    # sum over bins of |hits - confidence sum| / N = (|1 - 0.85| + |2 - 1.3| + |0 - 0.55|) / 4
    assert metrics["test/ece"] == pytest.approx((0.15 + 0.7 + 0.55) / 4)
    assert confusion.tolist() == [[1, 0, 0], [1, 1, 0], [0, 0, 1]]  # rows true, columns predicted
