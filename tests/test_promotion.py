from dataclasses import replace

import numpy as np
import pytest

from pipeline.config.common import ValidationConfig
from pipeline.data.store import Split
from pipeline.metrics import clearly_better
from pipeline.promotion import (
    choose_round,
    cross_fitted_pixel_accuracy,
    pixel_logistic_accuracy,
    promote,
    usefulness_warnings,
)

ORDER = ["r0", "r1", "r2", "r3"]


def nested(accuracy: dict[str, float], images: int = 50) -> dict[str, np.ndarray]:
    """Validation hits where a more accurate round gets right every image a less accurate one does: the
    first accuracy * images images."""
    return {name: (np.arange(images) < round(a * images)).astype(int) for name, a in accuracy.items()}


def test_a_round_clearly_worse_on_validation_is_not_promoted_and_is_named():
    """r2 42 of 50 against r3 30: 12 images apart, mean difference 0.24 against 1.645 * sqrt((12 - 50 *
    0.24**2) / 49 / 50) = 0.100, so r2 is promoted over the last round."""
    promotion = promote(nested({"r0": 0.70, "r1": 0.80, "r2": 0.84, "r3": 0.60}), ORDER)
    assert promotion.round == "r2" and promotion.validated
    assert promotion.note == "r2 promoted (validation 84.00%); r3 was worse on validation (r3 60.00%)"


def test_a_round_clearly_worse_than_the_teacher_is_never_promoted():
    promotion = promote(nested({"r0": 0.80, "r1": 0.60, "r2": 0.55, "r3": 0.62}), ORDER)
    assert promotion.round == "r0" and "r1, r2, r3 were worse" in promotion.note


def test_rounds_within_the_validation_noise_leave_the_last_round_promoted():
    """The 1000-label benchmark, seed 0: 50 validation images scored r0 0.90, r1 0.82, r2 0.88, r3 0.86 while
    the test set ranked r3 first (84.75 %) and r0 last (82.90 %). 2 images between r0 and r3 are noise:
    0.04 < 1.645 * sqrt((2 - 50 * 0.04**2) / 49 / 50) = 0.046."""
    promotion = promote(nested({"r0": 0.90, "r1": 0.82, "r2": 0.88, "r3": 0.86}), ORDER)
    assert promotion.round == "r3"
    assert promotion.note == (
        "r3 promoted (validation 86.00%); higher on validation but within its noise "
        "(one-sided paired test, 5 %): r0 90.00%, r2 88.00%"
    )


def test_ties_go_to_the_later_round():
    assert promote(nested({"r0": 0.8, "r1": 0.9, "r2": 0.9, "r3": 0.9}), ORDER).round == "r3"


def test_a_clear_difference_needs_more_than_a_couple_of_images_in_both_directions():
    """Paired: 6 images won and 4 lost is a mean of 0.04, noise; 10 won and none lost is clear."""
    last = np.r_[np.ones(25), np.zeros(25)].astype(int)
    mixed = last.copy()
    mixed[25:31], mixed[:4] = 1, 0
    assert not clearly_better(mixed, last)
    won = last.copy()
    won[25:35] = 1
    assert clearly_better(won, last) and not clearly_better(last, won)
    assert not clearly_better(np.ones(1), np.zeros(1))  # one image is no evidence


def test_without_validation_the_last_round_is_promoted_and_said_to_be_unvalidated():
    promotion = promote(None, ORDER, "3 labeled images per class")
    assert promotion.round == "r3" and not promotion.validated
    assert promotion.note == "r3 promoted as the last round, not validated: 3 labeled images per class"


def test_pixel_logistic_regression_separates_two_classes_of_images():
    rng = np.random.default_rng(0)
    labels = np.arange(60) % 2
    images = rng.integers(0, 100, (60, 4, 4, 1)).astype(np.uint8)
    images[labels == 1, :2] += 120  # class 1: a brighter top half
    accuracy = pixel_logistic_accuracy(images[:20], labels[:20], images[20:], labels[20:], 2)
    assert accuracy == 1.0


def test_a_model_at_chance_or_below_the_pixel_baseline_is_flagged():
    assert usefulness_warnings("r3", 0.90, 0.85, 10) == []
    below = usefulness_warnings("r3", 0.40, 0.42, 10)
    assert len(below) == 1 and "below logistic regression on raw pixels (42.0%)" in below[0]
    chance = usefulness_warnings("r3", 0.12, 0.40, 10)
    assert len(chance) == 2 and "at chance" in chance[0]


@pytest.mark.parametrize("accuracy", [0.149, 0.1])
def test_chance_is_under_one_and_a_half_times_one_over_the_classes(accuracy):
    assert "at chance" in usefulness_warnings("r1", accuracy, 0.0, 10)[0]


def brighter_top_half(n: int) -> tuple[np.ndarray, Split]:
    """`n` images of two classes told apart by a brighter top half, as the labeled split of a store."""
    rng = np.random.default_rng(0)
    labels = np.arange(n) % 2
    images = rng.integers(0, 100, (n, 8, 8, 1)).astype(np.uint8)
    images[labels == 1, :4] += 120
    paths = np.array([f"{i}.png" for i in range(n)])
    return images, Split(np.arange(n), labels, paths, paths)


def test_without_validation_a_cross_fitted_teacher_is_checked_against_the_pixel_baseline():
    """The pixel baseline is cross-fitted on the teacher's folds (1.0 on these images); a teacher at chance
    on its held-out folds is named with both numbers, and the last round is still the one promoted."""
    images, train = brighter_top_half(16)
    results = {name: {"test/accuracy": 0.5} for name in ORDER}
    cfg = ValidationConfig(per_class=5, min_train_per_class=10)
    weak = {"mode": "probe", "by": "cross-fitting", "scores": {"probe": 0.5, "scratch": 0.25}, "folds": 4}
    promotion, logged, warnings = choose_round(results, ORDER, images, train, None, cfg, 2, weak, seed=0)
    assert promotion.round == "r3" and not promotion.validated and results["r3"]["promoted"] == 1.0
    assert logged == {"cv/teacher_accuracy": 0.5, "cv/pixel_logistic_accuracy": 1.0}
    assert len(warnings) == 2 and "the teacher r0 (probe, which" in warnings[0] and "at chance" in warnings[0]
    assert "held-out labeled images (4-fold cross-fitting)" in warnings[1]
    assert "(50.0% on" in warnings[1] and "raw pixels (100.0%)" in warnings[1]
    fine = {**weak, "scores": {"probe": 1.0, "scratch": 0.25}}
    assert choose_round(results, ORDER, images, train, None, cfg, 2, fine, seed=0)[2] == []
    by_rule = {"mode": "probe", "by": "rule (no validation set)", "scores": {}, "folds": 0}
    assert choose_round(results, ORDER, images, train, None, cfg, 2, by_rule, seed=0)[1:] == ({}, [])


def test_the_cross_fitted_pixel_baseline_never_scores_an_image_it_was_fitted_on():
    """Labels unrelated to the pixels: fitted on the other folds, logistic regression is near chance, though
    it separates the 16 images it is fitted on (64 pixels each) perfectly."""
    images, train = brighter_top_half(16)
    shuffled = replace(train, labels=np.random.default_rng(1).permutation(train.labels))
    assert cross_fitted_pixel_accuracy(images, train, folds=4, seed=0, num_classes=2) == 1.0
    assert cross_fitted_pixel_accuracy(images, shuffled, folds=4, seed=0, num_classes=2) <= 0.75
    flat = images.reshape(16, -1)
    fitted = pixel_logistic_accuracy(flat, shuffled.labels, flat, shuffled.labels, 2)
    assert fitted == 1.0
