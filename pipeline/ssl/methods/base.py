"""What the SSL methods share: the method interface, the MLP head, the EMA update and its schedule.

Each method is a small module holding its heads and buffers, computing its loss on views. Every method
takes the shared encoder and a list of augmented views (B, C, H, W) and returns the loss and a dict of
values to log. Methods with a momentum (EMA) network update it in `after_step`, under no_grad.
The losses themselves are pure functions in `pipeline.losses`.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn

from pipeline.models import Encoder

Logs = dict[str, float]


def mlp(in_dim: int, hidden: int, out_dim: int, last_bn: bool = False) -> nn.Sequential:
    """Linear -> BN -> ReLU -> Linear (SimCLR's projection head; BYOL's projector and predictor)."""
    layers: list[nn.Module] = [
        nn.Linear(in_dim, hidden, bias=False),
        nn.BatchNorm1d(hidden),
        nn.ReLU(inplace=True),
    ]
    layers.append(nn.Linear(hidden, out_dim, bias=not last_bn))
    if last_bn:
        layers.append(nn.BatchNorm1d(out_dim, affine=False))
    return nn.Sequential(*layers)


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """target <- m * target + (1 - m) * online, parameters and buffers (BatchNorm statistics) alike."""
    for t, o in zip(target.parameters(), online.parameters(), strict=True):
        t.mul_(momentum).add_(o.detach(), alpha=1 - momentum)
    for t, o in zip(target.buffers(), online.buffers(), strict=True):
        t.copy_(o)


def cosine_momentum(base: float, step: int, total_steps: int) -> float:
    """BYOL's schedule: tau = 1 - (1 - base) * (cos(pi * step / total) + 1) / 2, from base up to 1."""
    return 1 - (1 - base) * (math.cos(math.pi * step / max(1, total_steps)) + 1) / 2


def frozen_copy(module: nn.Module) -> nn.Module:
    target = copy.deepcopy(module)
    target.requires_grad_(False)
    return target


class SSLMethod(nn.Module):
    n_views = 2

    def loss(self, encoder: Encoder, views: list[torch.Tensor], step: int) -> tuple[torch.Tensor, Logs]:
        raise NotImplementedError

    def after_step(self, encoder: Encoder, step: int, total_steps: int) -> None:
        """Called after each optimizer step (EMA updates)."""


@dataclass(frozen=True)
class Shapes:
    """What a method's heads are sized by: the encoder, the image channels, the projection width and the
    steps of one epoch (for schedules counted in epochs)."""

    encoder: Encoder
    channels: int
    dim: int
    steps_per_epoch: int

    @property
    def features(self) -> int:
        return self.encoder.feature_dim
