"""FixMatch's weak augmentation of a whole batch of tensors: a horizontal flip and a shift by whole pixels,
reflect-padded (augment.weak's policy), the teacher's and the online students' weak view."""

from __future__ import annotations

import torch


class BatchWeak:
    """Callable: (B, C, H, W) floats in [0, 1] -> the batch flipped and shifted (augment.weak's policy,
    FixMatch's weak view), from its own seeded generator (`state_dict` as BatchStrong's)."""

    def __init__(self, image_size: int, seed: int):
        self.image_size = image_size
        self.generator = torch.Generator().manual_seed(seed)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.generator.set_state(state["generator"])

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        n, pad = len(x), max(1, self.image_size // 8)
        flip = torch.rand(n, generator=self.generator) < 0.5
        shift = torch.randint(-pad, pad + 1, (n, 2), generator=self.generator)
        return _flip_shift(x.contiguous(), flip, shift).contiguous(memory_format=torch.channels_last)


def _reflect(i: torch.Tensor, size: int) -> torch.Tensor:
    """Indices past either end folded back into [0, size), mirrored at the edge pixel (reflect-101)."""
    i = i.abs()
    return torch.where(i >= size, 2 * (size - 1) - i, i)


def _flip_shift(x: torch.Tensor, flip: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Horizontal flip where `flip`, then a shift by whole pixels (`shift`: (B, 2) as x, y), the image
    reflected at its border (augment.weak's reflect padding + crop): a gather of whole pixels."""
    n, _, h, w = x.shape
    cols = _reflect(torch.arange(w) - shift[:, :1], w)  # a shift is within the 1/8 padding: one fold
    cols = torch.where(flip[:, None], w - 1 - cols, cols)
    rows = _reflect(torch.arange(h) - shift[:, 1:], h)
    batch = torch.arange(n)[:, None, None]
    # The result has channels-last strides, which the ops below keep. Another layout (e.g. a gather in NCHW)
    # gives the same pixels but other float rounding in later convolutions, so other weights after training.
    return x.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
