import math

import pytest
import torch

from pipeline.losses.semi import (
    align_distribution,
    consistency_loss,
    entropy_minimization,
    self_adaptive_mask,
    truncated_gaussian_weight,
    weighted_soft_cross_entropy,
)


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


def test_distribution_alignment_hand_computed():
    probs = torch.tensor([[0.6, 0.4]])
    # the model predicts class 0 in 75 % of the mass, the prior says 50 %: 0.6 * 0.5/0.75, 0.4 * 0.5/0.25
    aligned = align_distribution(probs, torch.tensor([0.5, 0.5]), torch.tensor([0.75, 0.25]))
    expected = torch.tensor([0.4, 0.8]) / 1.2
    assert torch.allclose(aligned, expected[None])


def test_distribution_alignment_moves_predicted_class_shares_to_the_prior():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2000, 4, generator=g) + torch.tensor([2.0, 0.0, 0.0, 0.0])  # biased to class 0
    probs = logits.softmax(dim=1)
    aligned = align_distribution(probs, torch.full((4,), 0.25), probs.mean(dim=0))
    share = lambda p: torch.bincount(p.argmax(dim=1), minlength=4).float() / len(p)  # noqa: E731
    assert share(probs)[0] > 0.6
    assert (share(aligned) - 0.25).abs().max() < (share(probs) - 0.25).abs().max() / 3


def test_self_adaptive_mask_hand_computed():
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.5, 0.4], [0.3, 0.3, 0.4]])
    # class thresholds: class_mean / max * tau = (0.5, 0.25, 0.25) / 0.5 * 0.6 = (0.6, 0.3, 0.3)
    mask = self_adaptive_mask(probs, torch.tensor(0.6), torch.tensor([0.5, 0.25, 0.25]))
    assert mask.tolist() == [1.0, 1.0, 1.0]
    mask = self_adaptive_mask(probs, torch.tensor(0.9), torch.tensor([0.5, 0.25, 0.25]))  # (0.9, 0.45, 0.45)
    assert mask.tolist() == [0.0, 1.0, 0.0]


def test_truncated_gaussian_weight_hand_computed():
    confidence = torch.tensor([0.9, 0.6, 0.4])
    weights = truncated_gaussian_weight(confidence, torch.tensor(0.6), torch.tensor(0.01))
    # above the mean: 1; at the mean: 1; 0.2 below with sigma 0.1: exp(-0.04 / (2 * 0.01 / 4)) = exp(-8)
    assert weights.tolist() == pytest.approx([1.0, 1.0, math.exp(-8.0)], rel=1e-5)


def test_consistency_loss_targets_the_weak_views_argmax_without_gradient_through_it():
    logits_strong = torch.tensor([[0.0, 0.0], [2.0, 0.0]], requires_grad=True)
    probs_weak = torch.tensor([[0.3, 0.7], [0.6, 0.4]], requires_grad=True)
    loss = consistency_loss(logits_strong, probs_weak, torch.tensor([1.0, 1.0]))
    expected = (-math.log(0.5) - math.log(math.exp(2) / (math.exp(2) + 1))) / 2  # targets: class 1, class 0
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    loss.backward()
    assert probs_weak.grad is None and logits_strong.grad is not None


def test_masked_images_add_nothing_to_the_consistency_loss():
    logits_strong = torch.tensor([[0.0, 0.0], [5.0, -5.0]], requires_grad=True)
    probs_weak = torch.tensor([[0.9, 0.1], [0.2, 0.8]])
    loss = consistency_loss(logits_strong, probs_weak, torch.tensor([1.0, 0.0]))
    assert loss.item() == pytest.approx(-math.log(0.5) / 2, abs=1e-6)  # the masked image's huge loss: gone
    loss.backward()
    assert logits_strong.grad[1].abs().sum() == 0


def test_online_consistency_moves_a_linear_boundary_into_the_gap_on_a_toy_problem():
    """Two Gaussian blobs on the x axis (centres -2 and +2), one label each, both off to the right (-0.5 and
    +3.5): cross-entropy on the labels alone puts the boundary near their midpoint, x = 1.5, inside blob +2.
    The consistency term (the weak view's confident argmax as the strong view's target) moves it into the
    gap at x = 0, which the unlabeled points show."""

    def train(consistency: bool) -> float:
        g = torch.Generator().manual_seed(0)
        y = torch.arange(1000) % 2
        x = torch.stack([4.0 * y - 2.0, torch.zeros(1000)], dim=1) + torch.randn(1000, 2, generator=g)
        xl, yl = torch.tensor([[-0.5, 0.0], [3.5, 0.0]]), torch.tensor([0, 1])
        model = torch.nn.Linear(2, 2)
        torch.nn.init.zeros_(model.weight)
        torch.nn.init.zeros_(model.bias)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        for step in range(500):
            loss = torch.nn.functional.cross_entropy(model(xl), yl)
            if consistency and step >= 100:  # once the labels alone have placed the boundary
                with torch.no_grad():
                    weak = model(x + 0.1 * torch.randn(x.shape, generator=g)).softmax(dim=1)
                strong = model(x + 0.5 * torch.randn(x.shape, generator=g))
                loss = loss + consistency_loss(strong, weak, (weak.max(dim=1).values > 0.7).float())
            opt.zero_grad()
            loss.backward()
            opt.step()
        return (model(x).argmax(dim=1) == y).float().mean().item()

    supervised, consistent = train(consistency=False), train(consistency=True)
    assert supervised < 0.95 and consistent > supervised + 0.03
