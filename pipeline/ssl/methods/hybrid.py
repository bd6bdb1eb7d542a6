"""A reconstruction + contrastive hybrid: masked reconstruction and NT-Xent on one encoder."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from pipeline.config.pretrain import MethodSection
from pipeline.losses.combine import uncertainty_weighting
from pipeline.losses.contrastive import nt_xent
from pipeline.schedules import linear_ramp
from pipeline.ssl.methods.base import Shapes, SSLMethod, mlp
from pipeline.ssl.methods.simmim import MaskedImageModel


class Config(MethodSection):
    """One encoder, a masked-reconstruction decoder and an NT-Xent head; losses combined by `combine`."""

    mask_ratio: float = Field(ge=0, lt=1, description="0 reconstructs the unmasked input (autoencoding)")
    patch: int = Field(ge=1)
    temperature: float = Field(gt=0)
    combine: Literal["fixed", "warmup", "uncertainty"] = Field(
        description="fixed weights; warmup: contrastive weight ramps up; uncertainty: learned log-variances"
    )
    reconstruction_weight: float = Field(ge=0)
    contrastive_weight: float = Field(ge=0)
    warmup_epochs: float = Field(ge=0, description="epochs of the contrastive ramp (combine: warmup)")


class Hybrid(SSLMethod):
    """Reconstruction + discrimination on one encoder: SimMIM-style masked reconstruction of the first view
    and NT-Xent between the two views, combined by a fixed rule, a warm-up of the contrastive term, or learned
    uncertainty weights (one log-variance per loss)."""

    def __init__(self, cfg: Config, shapes: Shapes):
        super().__init__()
        feature_dim, self.cfg = shapes.features, cfg
        self.head = mlp(feature_dim, feature_dim, shapes.dim)
        self.mim = MaskedImageModel(
            feature_dim, shapes.encoder.stride, shapes.channels, cfg.mask_ratio, cfg.patch
        )
        self.log_variances = nn.Parameter(torch.zeros(2))  # used by the uncertainty rule only
        self.warmup_steps = round(cfg.warmup_epochs * shapes.steps_per_epoch)

    def loss(self, encoder, views, step):
        cfg = self.cfg
        reconstruction = self.mim.loss(encoder, views[0])
        z = self.head(encoder(torch.cat(views)))
        contrastive = nt_xent(*z.chunk(2), cfg.temperature)
        if cfg.combine == "uncertainty":
            total = uncertainty_weighting(torch.stack([reconstruction, contrastive]), self.log_variances)
            w_rec, w_con = torch.exp(-self.log_variances.detach()).tolist()
        else:
            w_rec, w_con = cfg.reconstruction_weight, cfg.contrastive_weight
            if cfg.combine == "warmup":
                w_con = linear_ramp(step, self.warmup_steps, cfg.contrastive_weight)
            total = w_rec * reconstruction + w_con * contrastive
        logs = {"ssl/loss_reconstruction": reconstruction.item(), "ssl/loss_contrastive": contrastive.item(),
                "ssl/weight_reconstruction": w_rec, "ssl/weight_contrastive": w_con}  # fmt: skip
        return total, logs


def build(cfg: Config, shapes: Shapes) -> Hybrid:
    return Hybrid(cfg, shapes)
