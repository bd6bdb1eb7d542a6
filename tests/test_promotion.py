import numpy as np
import pytest

from pipeline.promotion import pixel_logistic_accuracy, promote, usefulness_warnings

ORDER = ["r0", "r1", "r2", "r3"]


def test_the_best_validated_round_is_promoted_and_the_worse_later_ones_named():
    promotion = promote({"r0": 0.70, "r1": 0.80, "r2": 0.84, "r3": 0.82}, ORDER)
    assert promotion.round == "r2" and promotion.validated
    assert promotion.note == "r2 promoted (validation 84.00%); r3 was worse on validation (r3 82.00%)"


def test_a_round_worse_on_validation_than_the_teacher_is_never_promoted():
    promotion = promote({"r0": 0.80, "r1": 0.78, "r2": 0.75, "r3": 0.79}, ORDER)
    assert promotion.round == "r0" and "r1, r2, r3 were worse" in promotion.note


def test_ties_go_to_the_later_round():
    assert promote({"r0": 0.8, "r1": 0.9, "r2": 0.9, "r3": 0.9}, ORDER).round == "r3"


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
