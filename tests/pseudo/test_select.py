import numpy as np
import pytest

from pipeline.pseudo.select import confidence_selection, softmax


def test_softmax_temperature_sharpens():
    logits = np.array([[2.0, 1.0, 0.0]])
    assert softmax(logits).sum() == pytest.approx(1.0)
    assert softmax(logits, 0.5).max() > softmax(logits, 1.0).max() > softmax(logits, 2.0).max()


def test_threshold_ood_and_weights():
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.95, 0.05]])
    in_dist = np.array([True, True, True, False])
    sel = confidence_selection(probs, threshold=0.7, in_distribution=in_dist, weighting="confidence")
    assert sel.accepted.tolist() == [True, False, True, False]
    assert sel.pseudo_label.tolist() == [0, 0, 1, 0]
    assert sel.weight.tolist() == pytest.approx([0.9, 0.0, 0.8, 0.0])
    assert sel.reason.tolist() == ["accepted", "low_confidence", "accepted", "ood"]
    uniform = confidence_selection(probs, 0.7, in_dist, "uniform")
    assert uniform.weight.tolist() == [1.0, 0.0, 1.0, 0.0]


def test_threshold_is_inclusive():
    sel = confidence_selection(np.array([[0.7, 0.3]]), 0.7, np.array([True]), "uniform")
    assert sel.accepted.tolist() == [True]
