"""Barlow Twins (Zbontar et al. 2021): the cross-correlation of two views pushed to the identity."""

from __future__ import annotations

import torch
from pydantic import Field

from pipeline.config.pretrain import MethodSection
from pipeline.losses.redundancy import barlow_twins_loss
from pipeline.ssl.methods.base import Shapes, SSLMethod, mlp


class Config(MethodSection):
    lambd: float = Field(ge=0, description="weight of the off-diagonal (redundancy) term")


class BarlowTwins(SSLMethod):
    def __init__(self, cfg: Config, feature_dim: int, dim: int):
        super().__init__()
        self.cfg, self.head = cfg, mlp(feature_dim, feature_dim, dim)

    def loss(self, encoder, views, step):
        z1, z2 = self.head(encoder(torch.cat(views))).chunk(2)
        return barlow_twins_loss(z1, z2, self.cfg.lambd), {}


def build(cfg: Config, shapes: Shapes) -> BarlowTwins:
    return BarlowTwins(cfg, shapes.features, shapes.dim)
