"""DINO (Caron et al. 2021): self-distillation to a momentum teacher with centering and sharpening."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from pipeline.config.pretrain import MethodSection
from pipeline.losses.distillation import dino_loss, update_center
from pipeline.models import Encoder
from pipeline.ssl.methods.base import Shapes, SSLMethod, cosine_momentum, ema_update, frozen_copy


class Config(MethodSection):
    out_dim: int = Field(ge=2, description="dimensions K of the DINO head output")
    student_temperature: float = Field(gt=0)
    teacher_temperature: float = Field(gt=0)
    center_momentum: float = Field(ge=0, lt=1)
    momentum: float = Field(ge=0, lt=1, description="base EMA momentum of the teacher, raised to 1 by cosine")


class DINOHead(nn.Module):
    """MLP -> L2-normalized bottleneck -> weight-normalized linear layer to K outputs (DINO's head)."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, hidden))
        self.last = nn.utils.parametrizations.weight_norm(nn.Linear(hidden, out_dim, bias=False))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.last(F.normalize(self.mlp(h), dim=1))


class DINO(SSLMethod):
    def __init__(self, cfg: Config, encoder: Encoder, dim: int):
        super().__init__()
        self.cfg, self.head = cfg, DINOHead(encoder.feature_dim, dim, cfg.out_dim)
        self.teacher_encoder, self.teacher_head = frozen_copy(encoder), frozen_copy(self.head)
        self.register_buffer("center", torch.zeros(1, cfg.out_dim))

    def loss(self, encoder, views, step):
        student = self.head(encoder(torch.cat(views))).chunk(len(views))
        with torch.no_grad():
            teacher = self.teacher_head(self.teacher_encoder(torch.cat(views))).chunk(len(views))
        cfg = self.cfg
        loss = dino_loss(
            list(student), list(teacher), self.center, cfg.student_temperature, cfg.teacher_temperature
        )
        self.center = update_center(self.center, list(teacher), cfg.center_momentum)
        return loss, {}

    def after_step(self, encoder, step, total_steps):
        tau = cosine_momentum(self.cfg.momentum, step, total_steps)
        ema_update(self.teacher_encoder, encoder, tau)
        ema_update(self.teacher_head, self.head, tau)


def build(cfg: Config, shapes: Shapes) -> DINO:
    return DINO(cfg, shapes.encoder, shapes.dim)
