"""MoCo v2 (Chen et al. 2020): a momentum key encoder and a queue of negatives, InfoNCE."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field

from pipeline.config.pretrain import MethodSection
from pipeline.losses.contrastive import info_nce
from pipeline.models import Encoder
from pipeline.ssl.methods.base import Shapes, SSLMethod, ema_update, frozen_copy, mlp


class Config(MethodSection):
    temperature: float = Field(gt=0)
    queue_size: int = Field(ge=1, description="negatives kept from earlier batches")
    momentum: float = Field(ge=0, lt=1, description="EMA momentum of the key encoder")


class MoCo(SSLMethod):
    """MoCo v2: MLP head, momentum key encoder, a queue of negatives."""

    def __init__(self, cfg: Config, encoder: Encoder, dim: int):
        super().__init__()
        self.cfg, self.head = cfg, mlp(encoder.feature_dim, encoder.feature_dim, dim)
        self.key_encoder, self.key_head = frozen_copy(encoder), frozen_copy(self.head)
        self.register_buffer("queue", F.normalize(torch.randn(cfg.queue_size, dim), dim=1))
        self.register_buffer("pointer", torch.zeros((), dtype=torch.long))  # a buffer: resume points keep it

    def loss(self, encoder, views, step):
        q = self.head(encoder(views[0]))
        with torch.no_grad():
            k = F.normalize(self.key_head(self.key_encoder(views[1])), dim=1)
        loss = info_nce(q, k, self.queue.clone(), self.cfg.temperature)
        self._enqueue(k)
        return loss, {}

    @torch.no_grad()
    def _enqueue(self, keys: torch.Tensor) -> None:
        idx = (self.pointer + torch.arange(len(keys), device=keys.device)) % len(self.queue)
        self.queue[idx] = keys
        self.pointer.fill_(int(idx[-1] + 1) % len(self.queue))

    def after_step(self, encoder, step, total_steps):
        ema_update(self.key_encoder, encoder, self.cfg.momentum)
        ema_update(self.key_head, self.head, self.cfg.momentum)


def build(cfg: Config, shapes: Shapes) -> MoCo:
    return MoCo(cfg, shapes.encoder, shapes.dim)
