"""The encoder (a backbone of pipeline.backbones) and the classifier (teacher, students). The SSL heads are in
pipeline.ssl.methods.

The encoder takes float images in [0, 1] of shape (B, C, H, W) and normalizes them itself with the dataset's
mean and std (stored as buffers, so a checkpoint carries them); its features are the global average of the
backbone's last feature map.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from pipeline.backbones import (
    BACKBONES,
    STEM_STRIDE,
    TORCHVISION_BACKBONES,
    auto_stem,
    build_body,
    torchvision_key,
)
from pipeline.config.base import ConfigError
from pipeline.config.common import MIN_WIDTH, ModelConfig


@dataclass(frozen=True)
class Architecture:
    """What builds a model. Checkpoints written before backbones existed lack the last two fields: they
    were small_resnet with the cifar stem, these defaults."""

    channels: int
    width: int
    depth: int
    num_classes: int = 0
    dropout: float = 0.0
    stochastic_depth: float = 0.0
    backbone: str = "small_resnet"
    stem: str = "cifar"

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise ValueError(f"unknown backbone '{self.backbone}' (known: {', '.join(BACKBONES)})")
        if self.stem not in STEM_STRIDE:
            raise ValueError(f"unknown stem '{self.stem}' (known: {', '.join(STEM_STRIDE)})")
        if self.backbone == "small_resnet" and self.width < MIN_WIDTH:
            raise ValueError(
                f"model width {self.width} < {MIN_WIDTH}: narrower models hang oneDNN's AVX2 kernels"
            )

    def to_dict(self) -> dict:
        return asdict(self)


class Encoder(nn.Module):
    def __init__(self, arch: Architecture, mean: list[float] | None = None, std: list[float] | None = None):
        super().__init__()
        c = arch.channels
        self.register_buffer("mean", torch.tensor(mean or [0.5] * c).view(1, c, 1, 1))
        self.register_buffer("std", torch.tensor(std or [0.25] * c).view(1, c, 1, 1))
        body = build_body(arch.backbone, c, arch.width, arch.depth, arch.stem, arch.stochastic_depth)
        self.stem, self.blocks = body.stem, body.blocks
        self.feature_dim, self.stride = body.features, body.stride

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def feature_map(self, x: torch.Tensor, normalized: bool = False) -> torch.Tensor:
        """(B, C, H, W) images in [0, 1] (or already normalized) -> (B, features, H / stride, W / stride)."""
        x = x.contiguous(memory_format=torch.channels_last)  # a no-op when the batch already is
        return self.blocks(self.stem(x if normalized else self.normalize(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.feature_map(x).mean(dim=(2, 3))  # (B, features)


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


def encoder_architecture(model: ModelConfig, channels: int, image_size: int) -> Architecture:
    """The SSL encoder's (and so the teacher's) architecture: the `model` section, its stem resolved."""
    stem = auto_stem(model.stem, image_size, model.weights)
    return Architecture(channels, model.width, model.depth, backbone=model.backbone, stem=stem)


def resnet_in_file(keys: set[str]) -> str:
    """What a torchvision ResNet state dict holds, from its keys: 'resnet50', 'resnet18', ...."""
    bottleneck = "layer1.0.conv3.weight" in keys
    layer3 = len({k.split(".")[1] for k in keys if k.startswith("layer3.")})
    names = {(False, 2): "resnet18", (False, 6): "resnet34", (True, 6): "resnet50", (True, 23): "resnet101"}
    return names.get((bottleneck, layer3), f"a ResNet with {layer3} blocks in layer3")


def load_weights(encoder: Encoder, arch: Architecture, path: Path) -> list[str]:
    """Load `model.weights`, a torchvision ResNet state dict (what torchvision.models.resnet18(weights=...)
    .state_dict() saves), into `encoder`; returns the keys it ignored (the classifier, fc). A 1-channel
    encoder gets the RGB kernels of conv1 summed, as timm adapts a pretrained first conv to grayscale.
    Nothing is downloaded. Raises ConfigError naming model.weights and what does not fit."""
    where = f"model.weights {path}"
    if arch.backbone not in TORCHVISION_BACKBONES:
        raise ConfigError(f"{where}: torchvision weights fit {', '.join(TORCHVISION_BACKBONES)}, "
                          f"not model.backbone {arch.backbone}")  # fmt: skip
    if not Path(path).is_file():
        raise ConfigError(f"{where}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file gets the same clear error
        raise ConfigError(f"{where}: not a PyTorch state dict ({type(err).__name__}: {err})") from None
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"{where}: not a state dict of tensors")
    own, mapped, ignored = encoder.state_dict(), {}, []
    for key, value in state.items():
        ours = torchvision_key(key.removeprefix("module."))
        if ours is None:
            ignored.append(key)
        else:
            mapped[ours] = value
    conv = "stem.0.weight"
    if conv in mapped and mapped[conv].shape[1] == 3 and own[conv].shape[1] == 1:
        mapped[conv] = mapped[conv].sum(dim=1, keepdim=True)
    optional = {"mean", "std"} | {k for k in own if k.endswith("num_batches_tracked")}
    missing = sorted(set(own) - set(mapped) - optional)
    unexpected = sorted(set(mapped) - set(own))
    shapes = [f"{k}: file {tuple(v.shape)}, model {tuple(own[k].shape)}"
              for k, v in mapped.items() if k in own and v.shape != own[k].shape]  # fmt: skip
    if missing or unexpected or shapes:
        found = resnet_in_file(set(state))
        problems = [f"{len(missing)} missing keys (first: {missing[:3]})" if missing else "",
                    f"{len(unexpected)} unexpected keys (first: {unexpected[:3]})" if unexpected else "",
                    f"{len(shapes)} shape mismatches (first: {shapes[0]})" if shapes else ""]  # fmt: skip
        hint = ""
        if found != arch.backbone:
            hint = f"; the file holds a {found}, model.backbone is {arch.backbone}"
        elif shapes and shapes[0].startswith(conv):
            hint = "; its first conv is the ImageNet stem's: set model.stem to imagenet (or auto)"
        raise ConfigError(f"{where} does not fit the encoder: {'; '.join(p for p in problems if p)}{hint}")
    encoder.load_state_dict({**own, **mapped})
    return ignored


def initial_encoder(
    model: ModelConfig, channels: int, image_size: int, stats: dict
) -> tuple[Encoder, Architecture]:
    """The encoder `pretrain` starts from: `model.weights` when set, else at random."""
    arch = encoder_architecture(model, channels, image_size)
    encoder = build_encoder(arch, stats["mean"], stats["std"])
    if model.weights:
        ignored = load_weights(encoder, arch, Path(model.weights))
        print(f"model.weights: loaded {model.weights} (ignored: {', '.join(ignored) or 'nothing'})")
    return encoder, arch
