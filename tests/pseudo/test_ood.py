import numpy as np
import pytest

from pipeline.pseudo.ood import (
    calibrate_ood_threshold,
    cross_fitted_scores,
    energy_score,
    fit_class_gaussians,
    knn_distance,
    mahalanobis_score,
    msp_score,
    ood_scores,
    threshold_interval,
)


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


def test_threshold_interval_narrows_with_more_held_out_scores():
    rng = np.random.default_rng(0)
    few, many = rng.normal(size=40), rng.normal(size=4000)
    low_few, high_few = threshold_interval(few, 0.95, seed=0)
    low_many, high_many = threshold_interval(many, 0.95, seed=0)
    assert low_few <= calibrate_ood_threshold(few, 0.95) <= high_few
    assert low_many < 1.645 < high_many  # the normal's 95 % quantile
    assert high_many - low_many < (high_few - low_few) / 3  # ~ 1 / sqrt(100) as wide
    assert threshold_interval(many, 0.95, seed=0) == (low_many, high_many)  # seeded
    assert threshold_interval(many, 0.95, seed=1, draws=120) != (low_many, high_many)
    assert threshold_interval(np.full(5, 2.0), 0.95, seed=0) == (2.0, 2.0)
    with pytest.raises(ValueError, match="in-distribution"):
        threshold_interval(np.array([]), 0.95, seed=0)


def test_msp_and_energy_hand_computed():
    logits = np.array([[2.0, 0.0], [0.0, 0.0]])
    p = 1 / (1 + np.exp(-2.0))
    assert msp_score(logits) == pytest.approx([-p, -0.5])
    assert energy_score(logits) == pytest.approx([-np.log(np.exp(2) + 1), -np.log(2)])
    assert energy_score(logits, temperature=2.0) == pytest.approx(
        [-2 * np.log(np.exp(1) + 1), -2 * np.log(2)]
    )
    # energy keeps growing with the logits' scale where the MSP saturates at 1
    big = np.array([[50.0, 0.0], [100.0, 0.0]])
    assert msp_score(big)[0] == pytest.approx(msp_score(big)[1])
    assert energy_score(big)[1] < energy_score(big)[0] - 40


def test_mahalanobis_matches_naive_reference():
    rng = np.random.default_rng(1)
    x, labels = rng.normal(size=(12, 3)), np.array([0, 1, 2] * 4)
    means, precision = fit_class_gaussians(x, labels, 3, shrinkage=0.3)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    naive_means = np.stack([xn[labels == c].mean(0) for c in range(3)])
    resid = xn - naive_means[labels]
    cov = resid.T @ resid / len(x)
    shrunk = 0.7 * cov + 0.3 * np.trace(cov) / 3 * np.eye(3)
    assert means == pytest.approx(naive_means)
    assert precision == pytest.approx(np.linalg.inv(shrunk))
    queries = rng.normal(size=(4, 3))
    qn = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    naive = [min((q - m) @ np.linalg.inv(shrunk) @ (q - m) for m in naive_means) for q in qn]
    assert mahalanobis_score(queries, means, precision) == pytest.approx(naive)


def test_mahalanobis_ignores_a_class_without_samples():
    x, labels = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]]), np.array([0, 0, 1])
    means, precision = fit_class_gaussians(x, labels, 3, shrinkage=0.5)
    assert np.isfinite(mahalanobis_score(x, means, precision)).all()


def test_cross_fitted_scores_never_score_a_sample_with_itself():
    seen = []

    def scorer(train_x, train_y, held_x):
        overlap = set(map(tuple, train_x)) & set(map(tuple, held_x))
        seen.append(len(overlap))
        return held_x[:, 0]

    x = np.arange(16, dtype=float).reshape(8, 2)
    scores = cross_fitted_scores(x, np.array([0, 1] * 4), scorer, folds=4, seed=0)
    assert seen == [0, 0, 0, 0]
    assert scores.tolist() == x[:, 0].tolist()  # every sample scored exactly once, in its own place


@pytest.mark.parametrize(
    "method",
    [  # msp and energy fit a softmax-regression head per fold: seconds
        pytest.param("msp", marks=pytest.mark.slow),
        pytest.param("energy", marks=pytest.mark.slow),
        "mahalanobis",
        "knn",
        "propagation",
    ],
)
def test_every_method_scores_far_images_higher_and_calibrates_on_held_out_images(method):
    rng = np.random.default_rng(0)
    centers = 3 * np.eye(4, 8)  # four classes on four axes of an 8-d space
    labels = np.repeat(np.arange(4), 10)
    labeled = centers[labels] + rng.normal(scale=0.3, size=(40, 8))
    near = centers[rng.integers(0, 4, 200)] + rng.normal(scale=0.3, size=(200, 8))
    far = rng.normal(scale=0.3, size=(200, 8))  # the noise without any class's signal
    pool = np.concatenate([near, far])
    scores, held_out = ood_scores(
        method,
        pool,
        labeled,
        labels,
        4,
        k=1,
        shrinkage=0.5,
        folds=4,
        seed=0,
        graph_k=10,
        alpha=0.99,
        exact_max=100_000,
    )
    assert held_out.shape == (40,)
    threshold = calibrate_ood_threshold(held_out, 0.95)
    kept_near, kept_far = (scores[:200] <= threshold).mean(), (scores[200:] <= threshold).mean()
    # held-out scores are in the pool's units: about the asked 95 % of in-distribution images are kept
    assert kept_near > 0.85 and kept_far < kept_near - 0.3, (kept_near, kept_far)
