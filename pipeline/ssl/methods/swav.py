"""SwAV (Caron et al. 2020): swapped prediction of Sinkhorn-Knopp cluster assignments."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from pipeline.config.pretrain import MethodSection
from pipeline.losses.clustering import swav_loss
from pipeline.ssl.methods.base import Shapes, SSLMethod, mlp


class Config(MethodSection):
    prototypes: int = Field(ge=2)
    temperature: float = Field(gt=0)
    epsilon: float = Field(gt=0, description="Sinkhorn entropy regularization")
    sinkhorn_iterations: int = Field(ge=1)
    freeze_prototypes_steps: int = Field(ge=0, description="prototypes stay fixed this many first steps")


class SwAV(SSLMethod):
    def __init__(self, cfg: Config, feature_dim: int, dim: int):
        super().__init__()
        self.cfg, self.head = cfg, mlp(feature_dim, feature_dim, dim)
        self.prototypes = nn.Linear(dim, cfg.prototypes, bias=False)

    def loss(self, encoder, views, step):
        with torch.no_grad():  # prototypes stay on the unit sphere
            self.prototypes.weight.copy_(F.normalize(self.prototypes.weight, dim=1))
        self.prototypes.weight.requires_grad_(step >= self.cfg.freeze_prototypes_steps)
        z = F.normalize(self.head(encoder(torch.cat(views))), dim=1)
        s1, s2 = self.prototypes(z).chunk(2)  # (B, K) each
        cfg = self.cfg
        return swav_loss(s1, s2, cfg.temperature, cfg.epsilon, cfg.sinkhorn_iterations), {}


def build(cfg: Config, shapes: Shapes) -> SwAV:
    return SwAV(cfg, shapes.features, shapes.dim)
