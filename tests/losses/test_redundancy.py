import pytest
import torch

from pipeline.losses.redundancy import barlow_twins_loss, vicreg_loss

# Columns with zero mean, unit (biased) variance and zero correlation: standardized, decorrelated features.
ORTHO = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])


def naive_barlow(z1: torch.Tensor, z2: torch.Tensor, lambd: float) -> float:
    n, d = z1.shape
    a = (z1 - z1.mean(0)) / (z1.var(0, unbiased=False) + 1e-5).sqrt()
    b = (z2 - z2.mean(0)) / (z2.var(0, unbiased=False) + 1e-5).sqrt()
    loss = 0.0
    for i in range(d):
        for j in range(d):
            c = sum(a[k, i] * b[k, j] for k in range(n)) / n
            loss += (1 - c) ** 2 if i == j else lambd * c**2
    return float(loss)


def test_barlow_twins_is_zero_for_identity_cross_correlation():
    assert barlow_twins_loss(ORTHO, ORTHO.clone()).item() == pytest.approx(0.0, abs=1e-6)


def test_barlow_twins_hand_computed_for_anti_correlated_views():
    # C = -I: each diagonal term (1 - (-1))^2 = 4, two dimensions -> 8
    assert barlow_twins_loss(ORTHO, -ORTHO).item() == pytest.approx(8.0, rel=1e-4)


def test_barlow_twins_matches_naive_reference():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(6, 3, generator=g), torch.randn(6, 3, generator=g)
    assert barlow_twins_loss(z1, z2, 0.1).item() == pytest.approx(naive_barlow(z1, z2, 0.1), rel=1e-4)


def test_vicreg_zero_for_agreeing_spread_decorrelated_views():
    assert vicreg_loss(ORTHO, ORTHO.clone()).item() == pytest.approx(0.0, abs=1e-6)


def test_vicreg_hand_computed_for_collapsed_views():
    zeros = torch.zeros(4, 2)
    # invariance 0, covariance 0, std = sqrt(1e-4) = 0.01: hinge 0.99 per branch, averaged 0.99 -> 25 * 0.99
    assert vicreg_loss(zeros, zeros).item() == pytest.approx(25 * 0.99, rel=1e-5)


def test_vicreg_penalizes_correlated_dimensions():
    g = torch.Generator().manual_seed(1)
    x = 2 * torch.randn(256, 1, generator=g)
    correlated = torch.cat([x, x], dim=1)
    independent = torch.cat([x, 2 * torch.randn(256, 1, generator=g)], dim=1)
    assert vicreg_loss(correlated, correlated) > vicreg_loss(independent, independent)
