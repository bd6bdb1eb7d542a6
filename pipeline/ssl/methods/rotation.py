"""Rotation prediction (Gidaris et al. 2018), a pretext task."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.config.pretrain import MethodSection
from pipeline.ssl.methods.base import Shapes, SSLMethod


class Config(MethodSection):
    pass


class Rotation(SSLMethod):
    """Rotation prediction (Gidaris et al. 2018): every image at 0, 90, 180 and 270 degrees in one batch."""

    n_views = 1

    def __init__(self, cfg: Config, feature_dim: int):
        super().__init__()
        self.head = nn.Linear(feature_dim, 4)

    def loss(self, encoder, views, step):
        x = views[0]
        rotated = torch.cat([torch.rot90(x, k, dims=(2, 3)) for k in range(4)])  # (4B, C, H, W)
        labels = torch.arange(4, device=x.device).repeat_interleave(len(x))
        logits = self.head(encoder(rotated))
        accuracy = (logits.argmax(1) == labels).float().mean().item()
        return F.cross_entropy(logits, labels), {"ssl/rotation_accuracy": accuracy}


def build(cfg: Config, shapes: Shapes) -> Rotation:
    return Rotation(cfg, shapes.features)
