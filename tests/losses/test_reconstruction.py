import pytest
import torch

from pipeline.losses.combine import uncertainty_weighting
from pipeline.losses.reconstruction import masked_l1, patch_mask


def test_masked_l1_counts_masked_pixels_only():
    target = torch.ones(1, 2, 2, 2)
    prediction = torch.zeros(1, 2, 2, 2)
    prediction[0, :, 1, 1] = 5.0  # a large error on a visible pixel must not count
    mask = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    assert masked_l1(prediction, target, mask).item() == pytest.approx(1.0)
    prediction[0, 0, 0, 0] = 1.0  # one of the two channels of the masked pixel is now right
    assert masked_l1(prediction, target, mask).item() == pytest.approx(0.5)


def test_patch_mask_covers_the_asked_share_in_whole_patches():
    mask = patch_mask(3, 28, 28, patch=4, ratio=0.5, generator=torch.Generator().manual_seed(0))
    assert mask.shape == (3, 1, 28, 28)
    grid = mask[:, 0, ::4, ::4]  # one value per 4x4 patch
    assert grid.sum(dim=(1, 2)).tolist() == [round(0.5 * 49)] * 3
    assert torch.equal(mask, grid.repeat_interleave(4, 1).repeat_interleave(4, 2).unsqueeze(1))


def test_uncertainty_weighting_hand_computed_and_optimum():
    losses = torch.tensor([2.0, 0.5])
    s = torch.tensor([0.0, torch.log(torch.tensor(2.0)).item()], requires_grad=True)
    total = uncertainty_weighting(losses, s)
    assert total.item() == pytest.approx(2.0 + 0.25 + 0.6931472, abs=1e-5)
    at_optimum = torch.log(losses).clone().requires_grad_(True)  # s_i = log L_i
    uncertainty_weighting(losses, at_optimum).backward()
    assert at_optimum.grad.tolist() == pytest.approx([0.0, 0.0], abs=1e-6)
