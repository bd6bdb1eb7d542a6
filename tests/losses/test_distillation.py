import math

import pytest
import torch

from pipeline.losses.distillation import byol_loss, dino_loss, update_center


def test_byol_hand_computed():
    q = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    z = torch.tensor([[3.0, 0.0], [0.0, 2.0], [-1.0, 0.0]])  # cos 1, 0, -1 -> 0, 2, 4
    assert byol_loss(q, z).item() == pytest.approx(2.0, abs=1e-6)


def test_byol_is_zero_for_aligned_views_whatever_their_norm():
    g = torch.Generator().manual_seed(0)
    q = torch.randn(5, 8, generator=g)
    assert byol_loss(q, 7 * q).item() == pytest.approx(0.0, abs=1e-6)


def test_dino_hand_computed():
    teacher = [torch.tensor([[0.0, 0.0]])]  # P_t = (.5, .5)
    student = [torch.tensor([[5.0, 0.0]]), torch.tensor([[math.log(3.0), 0.0]])]  # view 1: P_s = (.75, .25)
    loss = dino_loss(student, teacher, torch.zeros(2), student_temperature=1.0, teacher_temperature=1.0)
    # only the pair (teacher view 0, student view 1) counts: -(.5 log .75 + .5 log .25)
    assert loss.item() == pytest.approx(-(0.5 * math.log(0.75) + 0.5 * math.log(0.25)), abs=1e-6)


def test_dino_is_smallest_when_the_student_matches_the_sharpened_teacher():
    g = torch.Generator().manual_seed(1)
    t, other = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g)
    center = torch.zeros(6)
    # both views give the teacher output t; a student with softmax(s / 0.1) == softmax(t / 0.04), s = 2.5 t,
    # reaches the minimum of the cross-entropy (the teacher's entropy)
    matched = dino_loss([t * 2.5, t * 2.5], [t, t], center, 0.1, 0.04)
    p_t = torch.softmax(t / 0.04, dim=1)
    assert matched.item() == pytest.approx(-(p_t * p_t.log()).sum(1).mean().item(), rel=1e-4)
    assert matched < dino_loss([other, other], [t, t], center, 0.1, 0.04)


def test_center_is_an_ema_of_the_teacher_mean():
    center = update_center(torch.zeros(1, 2), [torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 4.0]])], 0.9)
    assert center[0].tolist() == pytest.approx([0.1, 0.2])
