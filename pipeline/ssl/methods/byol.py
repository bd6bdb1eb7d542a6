"""BYOL (Grill et al. 2020): an online predictor regresses a momentum target network."""

from __future__ import annotations

import torch
from pydantic import Field

from pipeline.config.pretrain import MethodSection
from pipeline.losses.distillation import byol_loss
from pipeline.models import Encoder
from pipeline.ssl.methods.base import Shapes, SSLMethod, cosine_momentum, ema_update, frozen_copy, mlp


class Config(MethodSection):
    momentum: float = Field(ge=0, lt=1, description="base EMA momentum of the target, raised to 1 by cosine")


class BYOL(SSLMethod):
    def __init__(self, cfg: Config, encoder: Encoder, dim: int):
        super().__init__()
        self.cfg = cfg
        self.projector = mlp(encoder.feature_dim, encoder.feature_dim, dim)
        self.predictor = mlp(dim, encoder.feature_dim, dim)
        self.target_encoder, self.target_projector = frozen_copy(encoder), frozen_copy(self.projector)

    def loss(self, encoder, views, step):
        p1, p2 = self.predictor(self.projector(encoder(torch.cat(views)))).chunk(2)
        with torch.no_grad():
            z1, z2 = self.target_projector(self.target_encoder(torch.cat(views))).chunk(2)
        return byol_loss(p1, z2) + byol_loss(p2, z1), {}

    def after_step(self, encoder, step, total_steps):
        tau = cosine_momentum(self.cfg.momentum, step, total_steps)
        ema_update(self.target_encoder, encoder, tau)
        ema_update(self.target_projector, self.projector, tau)


def build(cfg: Config, shapes: Shapes) -> BYOL:
    return BYOL(cfg, shapes.encoder, shapes.dim)
