"""Reconstruction losses for masked image modeling and the reconstruction half of the hybrid."""

from __future__ import annotations

import torch


def masked_l1(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """SimMIM's loss (Xie et al. 2022, eq. 1): mean absolute error over the masked pixels only.

        L = sum_{masked p, c} |y_pc - x_pc| / (C * number of masked pixels)

    Args:
        prediction: (B, C, H, W) reconstructed pixels y.
        target: (B, C, H, W) original pixels x.
        mask: (B, 1, H, W) 1 where the input was masked, 0 where it was visible.
    """
    assert prediction.shape == target.shape, f"{prediction.shape} vs {target.shape}"
    assert mask.shape[0] == target.shape[0] and mask.shape[2:] == target.shape[2:], f"mask {mask.shape}"
    mask = mask.to(prediction.dtype)
    per_pixel = (prediction - target).abs() * mask  # (B, C, H, W), broadcast over channels
    return per_pixel.sum() / (mask.sum() * target.shape[1]).clamp_min(1e-5)


def patch_mask(
    batch: int, height: int, width: int, patch: int, ratio: float, generator: torch.Generator
) -> torch.Tensor:
    """A random (B, 1, H, W) mask of `patch` x `patch` squares covering a share `ratio` of the patches."""
    gh, gw = -(-height // patch), -(-width // patch)
    n_masked = round(ratio * gh * gw)
    order = torch.rand(batch, gh * gw, generator=generator).argsort(dim=1)
    grid = torch.zeros(batch, gh * gw)
    grid.scatter_(1, order[:, :n_masked], 1.0)
    mask = grid.view(batch, 1, gh, gw).repeat_interleave(patch, 2).repeat_interleave(patch, 3)
    return mask[:, :, :height, :width]
