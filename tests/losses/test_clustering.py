import pytest
import torch

from pipeline.losses.clustering import sinkhorn_knopp, swav_loss


def test_sinkhorn_codes_are_distributions_with_equal_prototype_mass():
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(12, 4, generator=g)
    q = sinkhorn_knopp(scores, epsilon=0.5, iterations=50)
    assert q.sum(dim=1).tolist() == pytest.approx([1.0] * 12, abs=1e-4)
    assert q.sum(dim=0).tolist() == pytest.approx([3.0] * 4, abs=1e-3)  # B / K each


def test_sinkhorn_spreads_a_batch_that_prefers_one_prototype():
    scores = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.6, 0.4]])  # all prefer prototype 0
    q = sinkhorn_knopp(scores, epsilon=0.05, iterations=10)
    assert q.argmax(dim=1).tolist() == [0, 0, 1, 1]  # equipartition sends the least sure half to prototype 1


def test_swav_small_when_views_agree_large_when_swapped():
    agree = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    swapped = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    # codes ~ one-hot; p = softmax(scores / 0.1): -log p = log(1 + e^-10) when agreeing, ~10 when swapped
    assert swav_loss(agree, agree.clone()).item() == pytest.approx(0.0, abs=1e-3)
    assert swav_loss(agree, swapped).item() == pytest.approx(10.0, abs=1e-2)
