import numpy as np
import pytest

from pipeline.pseudo.ood import calibrate_ood_threshold, knn_distance


def naive_knn_distance(x: np.ndarray, ref: np.ndarray, k: int) -> np.ndarray:
    def cos(a, b):
        return a @ b / np.linalg.norm(a) / np.linalg.norm(b)

    return np.array([1 - sorted((cos(a, r) for r in ref), reverse=True)[k - 1] for a in x])


def test_knn_distance_matches_naive_reference():
    rng = np.random.default_rng(0)
    x, ref = rng.normal(size=(7, 5)), rng.normal(size=(9, 5))
    for k in (1, 3):
        assert knn_distance(x, ref, k, chunk=3) == pytest.approx(naive_knn_distance(x, ref, k))


def test_far_points_score_higher():
    ref = np.array([[1.0, 0.0], [0.9, 0.1]])
    scores = knn_distance(np.array([[1.0, 0.05], [0.0, 1.0]]), ref, k=1)
    assert scores[0] < 0.01 and scores[1] > 0.8


def test_leave_one_out_skips_self():
    ref = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    loo = knn_distance(ref, ref, k=1, exclude_self=True)
    assert loo.min() > 0.2  # with its own row counted every distance would be 0
    assert loo[2] == pytest.approx(1 - 1 / np.sqrt(2))


def test_calibrated_threshold_keeps_the_asked_share():
    scores = np.arange(100, dtype=float)
    threshold = calibrate_ood_threshold(scores, keep=0.95)
    assert 0.95 <= (scores <= threshold).mean() <= 0.96  # at least the asked share is kept
    with pytest.raises(ValueError, match="in-distribution"):
        calibrate_ood_threshold(np.array([]), 0.95)
