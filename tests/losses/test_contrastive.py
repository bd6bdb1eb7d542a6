import math

import pytest
import torch

from pipeline.losses.contrastive import nt_xent


def naive_nt_xent(z1: torch.Tensor, z2: torch.Tensor, t: float) -> float:
    """Eq. 1 of SimCLR written as loops, as an independent reference."""
    z = torch.nn.functional.normalize(torch.cat([z1, z2]), dim=1).tolist()
    n = len(z1)
    total = 0.0
    for i in range(2 * n):
        j = (i + n) % (2 * n)
        sim = [sum(a * b for a, b in zip(z[i], z[k], strict=True)) / t for k in range(2 * n)]
        denom = sum(math.exp(sim[k]) for k in range(2 * n) if k != i)
        total += -math.log(math.exp(sim[j]) / denom)
    return total / (2 * n)


def test_hand_computed_value():
    # Two orthogonal images, each view identical to its pair: every anchor has sims (0, 1, 0) to the others,
    # so l = -log(e / (e + 2)) = log(1 + 2 / e).
    z = torch.eye(2)
    assert nt_xent(z, z.clone(), temperature=1.0).item() == pytest.approx(math.log(1 + 2 / math.e), abs=1e-6)


def test_matches_naive_reference():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g)
    assert nt_xent(z1, z2, 0.3).item() == pytest.approx(naive_nt_xent(z1, z2, 0.3), rel=1e-5)


def test_falls_when_views_agree():
    g = torch.Generator().manual_seed(1)
    z1 = torch.randn(8, 16, generator=g)
    unrelated = torch.randn(8, 16, generator=g)
    close = z1 + 0.1 * torch.randn(8, 16, generator=g)
    assert nt_xent(z1, close, 0.5) < nt_xent(z1, unrelated, 0.5)


def test_symmetric_in_the_two_views_and_scale_invariant():
    g = torch.Generator().manual_seed(2)
    z1, z2 = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    assert nt_xent(z1, z2, 0.2).item() == pytest.approx(nt_xent(z2, z1, 0.2).item(), rel=1e-6)
    assert nt_xent(3 * z1, z2, 0.2).item() == pytest.approx(nt_xent(z1, z2, 0.2).item(), rel=1e-5)


def test_shape_mismatch_is_an_error():
    with pytest.raises(AssertionError, match="two \\(N, D\\)"):
        nt_xent(torch.randn(4, 3), torch.randn(5, 3), 0.5)


def test_info_nce_hand_computed_and_property():
    from pipeline.losses.contrastive import info_nce

    q = torch.tensor([[1.0, 0.0]])
    # logits (1, 0) / t=1: -log(e / (e + 1)) = log(1 + 1/e)
    loss = info_nce(q, torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 1.0]]), temperature=1.0)
    assert loss.item() == pytest.approx(math.log(1 + 1 / math.e), abs=1e-6)
    g = torch.Generator().manual_seed(3)
    queries, queue = torch.randn(8, 16, generator=g), torch.randn(32, 16, generator=g)
    matched = info_nce(queries, queries + 0.05 * torch.randn(8, 16, generator=g), queue, 0.2)
    unmatched = info_nce(queries, torch.randn(8, 16, generator=g), queue, 0.2)
    assert matched < unmatched
