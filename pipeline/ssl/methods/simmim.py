"""SimMIM (Xie et al. 2022): masked patches of the input reconstructed by a light pixel decoder."""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from pipeline.config.pretrain import MethodSection
from pipeline.losses.reconstruction import masked_l1, patch_mask
from pipeline.models import Encoder
from pipeline.ssl.methods.base import Shapes, SSLMethod


class Config(MethodSection):
    mask_ratio: float = Field(gt=0, lt=1)
    patch: int = Field(ge=1, description="side of a masked square, pixels")


class PixelDecoder(nn.Module):
    """SimMIM's light decoder for a CNN: 1x1 conv to C * stride^2 values per cell of the encoder's feature
    map, pixel-shuffled back to the image's resolution."""

    def __init__(self, feature_dim: int, channels: int, stride: int):
        super().__init__()
        self.proj = nn.Conv2d(feature_dim, channels * stride * stride, 1)
        self.shuffle = nn.PixelShuffle(stride)

    def forward(self, feature_map: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.proj(feature_map))  # (B, C, H, W)


class MaskedImageModel(nn.Module):
    """Masks square patches of the (normalized) input with a learned token and reconstructs them."""

    def __init__(self, feature_dim: int, stride: int, channels: int, mask_ratio: float, patch: int):
        super().__init__()
        self.mask_ratio, self.patch = mask_ratio, patch
        self.mask_token = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.decoder = PixelDecoder(feature_dim, channels, stride)
        self.generator = torch.Generator().manual_seed(0)

    def get_extra_state(self) -> torch.Tensor:  # the mask generator's state goes into state_dict()
        return self.generator.get_state()

    def set_extra_state(self, state: torch.Tensor) -> None:
        self.generator.set_state(state)

    def loss(self, encoder: Encoder, images: torch.Tensor) -> torch.Tensor:
        b, _, h, w = images.shape
        # (B, 1, H, W), drawn on the CPU from the seeded generator whatever device the images are on
        mask = patch_mask(b, h, w, self.patch, self.mask_ratio, self.generator).to(images.device)
        target = encoder.normalize(images)
        masked = target * (1 - mask) + self.mask_token * mask
        reconstruction = self.decoder(encoder.feature_map(masked, normalized=True))[:, :, :h, :w]
        if self.mask_ratio == 0:  # plain autoencoding: every pixel counts
            mask = torch.ones_like(mask)
        return masked_l1(reconstruction, target, mask)


class SimMIM(SSLMethod):
    n_views = 1

    def __init__(self, cfg: Config, feature_dim: int, stride: int, channels: int):
        super().__init__()
        self.mim = MaskedImageModel(feature_dim, stride, channels, cfg.mask_ratio, cfg.patch)

    def loss(self, encoder, views, step):
        return self.mim.loss(encoder, views[0]), {}


def build(cfg: Config, shapes: Shapes) -> SimMIM:
    return SimMIM(cfg, shapes.features, shapes.encoder.stride, shapes.channels)
