"""A small residual CNN: the encoder and the classifier (teacher, students). The SSL heads are in
pipeline.ssl.methods.

The encoder takes float images in [0, 1] of shape (B, C, H, W) and normalizes them itself with the dataset's
mean and std (stored as buffers, so a checkpoint carries them). Architecture:

    stem   conv3x3(C -> w) BN ReLU                      (H x W)
    stage1 `depth` residual blocks, first one stride 2  (H/2 x W/2, 2w channels)
    stage2 `depth` residual blocks, first one stride 2  (H/4 x W/4, 4w channels)
    global average pool -> features (4w)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.config.common import MIN_WIDTH


@dataclass(frozen=True)
class Architecture:
    channels: int
    width: int
    depth: int
    num_classes: int = 0
    dropout: float = 0.0
    stochastic_depth: float = 0.0

    def __post_init__(self) -> None:
        if self.width < MIN_WIDTH:
            raise ValueError(
                f"model width {self.width} < {MIN_WIDTH}: narrower models hang oneDNN's AVX2 kernels"
            )

    def to_dict(self) -> dict:
        return asdict(self)


class DropPath(nn.Module):
    """Stochastic depth (Huang et al. 2016), per sample: in training, each sample's residual branch is zeroed
    with probability p and the kept ones scaled by 1 / (1 - p). The draws of torchvision.ops.StochasticDepth
    in "row" mode, written here because importing torchvision costs every stage about 2 s."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        noise = torch.empty([x.shape[0]] + [1] * (x.ndim - 1), dtype=x.dtype, device=x.device).bernoulli_(
            keep
        )
        if keep > 0.0:
            noise.div_(keep)
        return x * noise


class ResidualBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, drop_prob: float):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
            )
        self.drop_path = DropPath(drop_prob)  # the residual branch, per sample, in training

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(self.shortcut(x) + self.drop_path(out))


class Encoder(nn.Module):
    def __init__(self, arch: Architecture, mean: list[float] | None = None, std: list[float] | None = None):
        super().__init__()
        c, w = arch.channels, arch.width
        self.register_buffer("mean", torch.tensor(mean or [0.5] * c).view(1, c, 1, 1))
        self.register_buffer("std", torch.tensor(std or [0.25] * c).view(1, c, 1, 1))
        self.stem = nn.Sequential(
            nn.Conv2d(c, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True)
        )
        blocks, c_in, n_blocks = [], w, 2 * arch.depth
        for stage, c_out in enumerate((2 * w, 4 * w)):
            for b in range(arch.depth):
                i = stage * arch.depth + b + 1
                # Linear decay rule: block i of L is dropped with probability p * i / L.
                drop = arch.stochastic_depth * i / n_blocks
                blocks.append(ResidualBlock(c_in, c_out, 2 if b == 0 else 1, drop))
                c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        self.feature_dim = 4 * w

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def feature_map(self, x: torch.Tensor, normalized: bool = False) -> torch.Tensor:
        """(B, C, H, W) images in [0, 1] (or already normalized) -> (B, 4w, H/4, W/4) features."""
        x = x.contiguous(memory_format=torch.channels_last)  # a no-op when the batch already is
        return self.blocks(self.stem(x if normalized else self.normalize(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.feature_map(x).mean(dim=(2, 3))  # (B, 4w)


class Classifier(nn.Module):
    """Encoder -> dropout -> linear head. Returns logits (B, num_classes)."""

    def __init__(self, arch: Architecture, mean: list[float] | None = None, std: list[float] | None = None):
        super().__init__()
        self.arch = arch
        self.encoder = Encoder(arch, mean, std)
        self.dropout = nn.Dropout(arch.dropout)
        self.head = nn.Linear(self.encoder.feature_dim, arch.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.encoder(x)))


def build_classifier(
    arch: Architecture, mean: list[float] | None = None, std: list[float] | None = None
) -> Classifier:
    # channels_last: oneDNN's CPU convolutions run about twice as fast in it as in NCHW.
    return Classifier(arch, mean, std).to(memory_format=torch.channels_last)


def build_encoder(
    arch: Architecture, mean: list[float] | None = None, std: list[float] | None = None
) -> Encoder:
    return Encoder(arch, mean, std).to(memory_format=torch.channels_last)
