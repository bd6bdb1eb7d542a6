"""The SSL methods by name. Adding a method: one module in pipeline/ssl/methods (a `Config` and a `build`)
and one line here."""

from __future__ import annotations

from types import ModuleType

import torch

from pipeline.config.base import ConfigError, validate
from pipeline.config.pretrain import MethodSection, PretrainConfig
from pipeline.models import Encoder
from pipeline.ssl.methods import (
    barlow_twins,
    byol,
    dino,
    hybrid,
    moco,
    rotation,
    simclr,
    simmim,
    swav,
    vicreg,
)
from pipeline.ssl.methods.base import Shapes, SSLMethod

NO_PRETRAINING = "none"  # pretrain.method: keep the encoder as built (model.weights, or at random)
METHODS: dict[str, ModuleType] = {
    "simclr": simclr,
    "moco": moco,
    "byol": byol,
    "dino": dino,
    "swav": swav,
    "barlow_twins": barlow_twins,
    "vicreg": vicreg,
    "simmim": simmim,
    "rotation": rotation,
    "hybrid": hybrid,
}


def method_config(cfg: PretrainConfig, name: str | None = None) -> MethodSection:
    """The validated settings of method `name` (default: `cfg.method`) from `pretrain.methods.<name>`."""
    name = name or cfg.method
    if name not in METHODS:
        raise ConfigError(f"invalid params.yaml:\n  pretrain.method: '{name}' is not one of "
                          f"{', '.join(METHODS)} or {NO_PRETRAINING}")  # fmt: skip
    if name not in cfg.methods:
        raise ConfigError(
            f"invalid params.yaml:\n  pretrain.methods.{name}: missing (the chosen method's settings)"
        )
    return validate(METHODS[name].Config, cfg.methods[name], f"pretrain.methods.{name}.")


def check_methods(cfg: PretrainConfig) -> None:
    """Validate the chosen method and every method section present; ConfigError naming the key otherwise."""
    for name in cfg.methods:
        if name == NO_PRETRAINING and not cfg.methods[name]:
            continue
        if name not in METHODS:
            raise ConfigError(
                f"invalid params.yaml:\n  pretrain.methods.{name}: not a method ({', '.join(METHODS)})"
            )
        method_config(cfg, name)
    if cfg.method != NO_PRETRAINING:
        method_config(cfg)


def method_settings(cfg: PretrainConfig) -> dict:
    """The chosen method's settings as logged: {method: settings}, {} without pretraining."""
    return {} if cfg.method == NO_PRETRAINING else {cfg.method: method_config(cfg).model_dump()}


def build_method(cfg: PretrainConfig, encoder: Encoder, channels: int, steps_per_epoch: int) -> SSLMethod:
    """The chosen method with its heads, channels_last like the encoder."""
    shapes = Shapes(encoder, channels, cfg.projection_dim, steps_per_epoch)
    method = METHODS[cfg.method].build(method_config(cfg), shapes)
    return method.to(memory_format=torch.channels_last)
