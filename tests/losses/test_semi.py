import math

import pytest
import torch

from pipeline.losses.semi import entropy_minimization, weighted_soft_cross_entropy


def test_weighted_soft_cross_entropy_hand_computed():
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])  # p = (.5, .5) and (.75, .25)
    targets = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    weights = torch.tensor([0.5, 1.0])
    first = -math.log(0.5)
    second = -(0.5 * math.log(0.75) + 0.5 * math.log(0.25))
    expected = (0.5 * first + 1.0 * second) / 2  # mean over the whole batch, FixMatch-style
    assert weighted_soft_cross_entropy(logits, targets, weights).item() == pytest.approx(expected, abs=1e-6)


def test_one_hot_targets_with_unit_weights_equal_cross_entropy():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 4, generator=g)
    labels = torch.tensor([0, 1, 2, 3, 0, 1])
    loss = weighted_soft_cross_entropy(logits, torch.eye(4)[labels], torch.ones(6))
    assert loss.item() == pytest.approx(torch.nn.functional.cross_entropy(logits, labels).item(), rel=1e-6)


def test_zero_weights_give_zero_loss_and_no_gradient():
    logits = torch.randn(3, 5, requires_grad=True)
    loss = weighted_soft_cross_entropy(logits, torch.full((3, 5), 0.2), torch.zeros(3))
    loss.backward()
    assert loss.item() == 0.0 and torch.count_nonzero(logits.grad) == 0


def test_entropy_of_uniform_and_one_hot_predictions():
    uniform = torch.zeros(2, 4)
    peaked = torch.tensor([[100.0, 0.0, 0.0, 0.0]])
    assert entropy_minimization(uniform, torch.ones(2)).item() == pytest.approx(math.log(4), abs=1e-6)
    assert entropy_minimization(peaked, torch.ones(1)).item() == pytest.approx(0.0, abs=1e-6)


def test_entropy_mask_selects_samples_and_empty_mask_is_zero():
    logits = torch.cat([torch.zeros(1, 4), torch.tensor([[100.0, 0.0, 0.0, 0.0]])])
    assert entropy_minimization(logits, torch.tensor([0.0, 1.0])).item() == pytest.approx(0.0, abs=1e-6)
    assert entropy_minimization(logits, torch.tensor([1.0, 0.0])).item() == pytest.approx(
        math.log(4), abs=1e-6
    )
    assert entropy_minimization(logits, torch.zeros(2)).item() == 0.0


@pytest.mark.slow
def test_the_entropy_term_lowers_prediction_entropy_on_unlabeled_points_of_a_toy_problem():
    """Two Gaussian blobs, 2 labels each: a linear model trained with + lambda * H on the unlabeled points
    ends more confident on them than the same model, same seed and steps, trained on the labels alone."""
    g = torch.Generator().manual_seed(0)
    centers = torch.tensor([[-2.0, 0.0], [2.0, 0.0]])
    labeled = centers.repeat_interleave(2, dim=0) + 0.5 * torch.randn(4, 2, generator=g)
    labels = torch.tensor([0, 0, 1, 1])
    unlabeled = centers.repeat_interleave(100, dim=0) + 0.5 * torch.randn(200, 2, generator=g)

    def unlabeled_entropy_after_training(lam: float) -> float:
        torch.manual_seed(0)
        model = torch.nn.Linear(2, 2)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        for _ in range(200):
            loss = torch.nn.functional.cross_entropy(model(labeled), labels)
            loss = loss + lam * entropy_minimization(model(unlabeled), torch.ones(200))
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            return entropy_minimization(model(unlabeled), torch.ones(200)).item()

    without, with_term = unlabeled_entropy_after_training(0.0), unlabeled_entropy_after_training(1.0)
    assert with_term < 0.5 * without
