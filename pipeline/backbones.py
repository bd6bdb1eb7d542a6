"""The encoder backbones, by name: each is a stem and a sequence of stages ending in a feature map.

    small_resnet  a stem and two residual stages of `depth` blocks, widths (w, 2w, 4w); the demo's network
    wrn_28_2      WRN-28-2 (Zagoruyko & Komodakis 2016), the network of FixMatch and USB: 1.5 M parameters
    resnet18/34/50  torchvision's ResNets (He et al. 2016), built by torchvision.models, fc removed

Stems: `cifar` is a 3x3 stride-1 convolution without max-pool (images up to 32 px); `imagenet` is the
7x7 stride-2 convolution and 3x3 max-pool of ResNet (larger images, and torchvision weights). Stochastic depth
(Huang et al. 2016) drops each residual branch per sample, block i of L with probability p * i / L.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import get_args

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.config.common import Backbone

BACKBONES = get_args(Backbone)  # from the smallest to the largest
TORCHVISION_BACKBONES = tuple(b for b in BACKBONES if b.startswith("resnet"))
STEM_STRIDE = {"cifar": 1, "imagenet": 4}  # the stem's downsampling
# pixels: the `auto` stem is `cifar` up to this size (CIFAR's), `imagenet` above it. With the cifar stem,
# small_resnet sees 21 px at once: on 48 px tinted Fashion-MNIST it trained to chance
# (docs/datasets_benchmark.md)
CIFAR_STEM_MAX = 32


def auto_stem(stem: str, image_size: int, weights: str | None = None) -> str:
    """`auto`: the ImageNet stem for torchvision weights (they were trained with it) and images over 32 px."""
    if stem != "auto":
        return stem
    return "imagenet" if weights or image_size > CIFAR_STEM_MAX else "cifar"


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


@dataclass
class Body:
    """A backbone: `stem` then `blocks` give a (B, features, H / stride, W / stride) feature map."""

    stem: nn.Module
    blocks: nn.Sequential
    features: int
    stride: int


def conv_stem(c_in: int, c_out: int, stem: str, bias: bool = False, norm: bool = True) -> nn.Sequential:
    """cifar: conv3x3 (BN ReLU); imagenet: conv7x7 stride 2 (BN ReLU), max-pool 3x3 stride 2."""
    large = stem == "imagenet"
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, 7 if large else 3, 2 if large else 1, 3 if large else 1,
                                         bias=bias)]  # fmt: skip
    if norm:
        layers += [nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
    if large:
        layers.append(nn.MaxPool2d(3, 2, 1))
    return nn.Sequential(*layers)


def drop_rates(p: float, blocks: int) -> list[float]:
    """The linear decay rule: block i of L (from 1) is dropped with probability p * i / L."""
    return [p * (i + 1) / blocks for i in range(blocks)]


class ResidualBlock(nn.Module):
    """small_resnet's block: conv3x3 BN ReLU conv3x3 BN, plus the (projected) input, then ReLU."""

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


def small_resnet(channels: int, width: int, depth: int, stem: str, stochastic_depth: float) -> Body:
    first = conv_stem(channels, width, stem)  # built first: the random initialisation of earlier versions
    drops, blocks, c_in = iter(drop_rates(stochastic_depth, 2 * depth)), [], width
    for c_out in (2 * width, 4 * width):
        for b in range(depth):
            blocks.append(ResidualBlock(c_in, c_out, 2 if b == 0 else 1, next(drops)))
            c_in = c_out
    return Body(first, nn.Sequential(*blocks), 4 * width, 4 * STEM_STRIDE[stem])


class PreActBlock(nn.Module):
    """WRN's block: BN LReLU conv3x3 BN LReLU conv3x3, plus the input (1x1-projected after the first
    activation when the shape changes). Leaky ReLU 0.1 as in FixMatch's WRN."""

    def __init__(self, c_in: int, c_out: int, stride: int, drop_prob: float):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=True)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=True)
        self.shortcut = (
            None if stride == 1 and c_in == c_out else nn.Conv2d(c_in, c_out, 1, stride, bias=True)
        )
        self.drop_path = DropPath(drop_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = F.leaky_relu(self.bn1(x), 0.1)
        out = self.conv2(F.leaky_relu(self.bn2(self.conv1(act)), 0.1))
        return (x if self.shortcut is None else self.shortcut(act)) + self.drop_path(out)


def wide_resnet(channels: int, depth: int, widen: int, stem: str, stochastic_depth: float) -> Body:
    """WRN-depth-widen: three groups of (depth - 4) / 6 blocks, widths 16k, 32k, 64k, strides 1, 2, 2; then
    BN and leaky ReLU. BatchNorm momentum is PyTorch's default: FixMatch's 0.001 (a TensorFlow port) leaves
    the running statistics near their initial values after a few hundred steps."""
    n, first = (depth - 4) // 6, conv_stem(channels, 16, stem, bias=True, norm=False)
    drops, blocks, c_in = iter(drop_rates(stochastic_depth, 3 * n)), [], 16
    for group, c_out in enumerate((16 * widen, 32 * widen, 64 * widen)):
        for b in range(n):
            blocks.append(PreActBlock(c_in, c_out, 2 if group > 0 and b == 0 else 1, next(drops)))
            c_in = c_out
    blocks += [nn.BatchNorm2d(c_in), nn.LeakyReLU(0.1, inplace=True)]
    return Body(first, nn.Sequential(*blocks), c_in, 4 * STEM_STRIDE[stem])


class BatchNormDropPath(nn.BatchNorm2d):
    """A residual block's last BatchNorm followed by DropPath: stochastic depth inside torchvision's blocks
    with their state-dict keys unchanged (so torchvision weights load)."""

    def __init__(self, features: int, p: float):
        super().__init__(features)
        self.drop_path = DropPath(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop_path(super().forward(x))


def torchvision_resnet(name: str, channels: int, stem: str, stochastic_depth: float) -> Body:
    """torchvision.models.<name>(weights=None) as stem (conv1 bn1 relu maxpool) and blocks (layer1..4)."""
    import torchvision.models  # lazily: importing torchvision costs every stage about 2 s

    net = getattr(torchvision.models, name)(weights=None)
    if stem == "imagenet":
        conv1, pool = nn.Conv2d(channels, 64, 7, 2, 3, bias=False), net.maxpool
    else:
        conv1, pool = nn.Conv2d(channels, 64, 3, 1, 1, bias=False), nn.Identity()
    layers = nn.Sequential(net.layer1, net.layer2, net.layer3, net.layer4)
    blocks = [block for layer in layers for block in layer]
    for block, p in zip(blocks, drop_rates(stochastic_depth, len(blocks)), strict=True):
        last = "bn3" if hasattr(block, "bn3") else "bn2"
        setattr(block, last, BatchNormDropPath(getattr(block, last).num_features, p))
    stride = 8 * STEM_STRIDE[stem]
    return Body(nn.Sequential(conv1, net.bn1, net.relu, pool), layers, net.fc.in_features, stride)


def build_body(
    backbone: str, channels: int, width: int, depth: int, stem: str, stochastic_depth: float
) -> Body:
    if backbone == "small_resnet":
        return small_resnet(channels, width, depth, stem, stochastic_depth)
    if backbone == "wrn_28_2":
        return wide_resnet(channels, 28, 2, stem, stochastic_depth)
    if backbone in TORCHVISION_BACKBONES:
        return torchvision_resnet(backbone, channels, stem, stochastic_depth)
    raise ValueError(f"unknown backbone '{backbone}' (known: {', '.join(BACKBONES)})")


def torchvision_key(key: str) -> str | None:
    """A torchvision ResNet state-dict key -> this encoder's (conv1 -> stem.0, bn1 -> stem.1, layerN ->
    blocks.N-1); None for the classifier (fc)."""
    head, _, rest = key.partition(".")
    if head == "fc":
        return None
    if head in ("conv1", "bn1"):
        return f"stem.{0 if head == 'conv1' else 1}.{rest}"
    if head.startswith("layer") and head[5:].isdigit():
        return f"blocks.{int(head[5:]) - 1}.{rest}"
    return key
