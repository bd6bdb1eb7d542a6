"""VICReg (Bardes et al. 2022): invariance, variance and covariance terms on two views."""

from __future__ import annotations

import torch
from pydantic import Field

from pipeline.config.pretrain import MethodSection
from pipeline.losses.redundancy import vicreg_loss
from pipeline.ssl.methods.base import Shapes, SSLMethod, mlp


class Config(MethodSection):
    sim_weight: float = Field(ge=0)
    var_weight: float = Field(ge=0)
    cov_weight: float = Field(ge=0)


class VICReg(SSLMethod):
    def __init__(self, cfg: Config, feature_dim: int, dim: int):
        super().__init__()
        self.cfg, self.head = cfg, mlp(feature_dim, feature_dim, dim)

    def loss(self, encoder, views, step):
        z1, z2 = self.head(encoder(torch.cat(views))).chunk(2)
        cfg = self.cfg
        return vicreg_loss(z1, z2, cfg.sim_weight, cfg.var_weight, cfg.cov_weight), {}


def build(cfg: Config, shapes: Shapes) -> VICReg:
    return VICReg(cfg, shapes.features, shapes.dim)
