"""SimCLR (Chen et al. 2020): NT-Xent between the projections of two views."""

from __future__ import annotations

import torch
from pydantic import Field

from pipeline.config.pretrain import MethodSection
from pipeline.losses.contrastive import nt_xent
from pipeline.ssl.methods.base import Shapes, SSLMethod, mlp


class Config(MethodSection):
    temperature: float = Field(gt=0, description="NT-Xent temperature")


class SimCLR(SSLMethod):
    def __init__(self, cfg: Config, feature_dim: int, dim: int):
        super().__init__()
        self.cfg, self.head = cfg, mlp(feature_dim, feature_dim, dim)

    def loss(self, encoder, views, step):
        z = self.head(encoder(torch.cat(views)))  # (2B, P): both views in one batch, so BN sees both
        return nt_xent(*z.chunk(2), self.cfg.temperature), {}


def build(cfg: Config, shapes: Shapes) -> SimCLR:
    return SimCLR(cfg, shapes.features, shapes.dim)
