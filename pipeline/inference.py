"""Batched inference without gradients, on `compute`'s device: the one loop behind predict (logits and
features), encode (SSL features) and augmented views (TTA), used by pseudolabel, evaluate, the kNN monitor
and serving.

Outputs come back float32 on the CPU, in the order of `index`, in blocks allocated once and filled batch by
batch: a list of per-batch outputs, kept between the batches' large freed activations, fragments the heap
until the process holds far more memory than it uses (docs/scale.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import torch

from pipeline.compute import CPU, Compute
from pipeline.datasets import Transform, image_batches
from pipeline.models import Classifier, Encoder

Forward = Callable[[torch.Tensor], dict[str, torch.Tensor]]


@torch.no_grad()
def batched_outputs(
    forward: Forward,
    widths: dict[str, int],
    images: np.ndarray,
    index: np.ndarray,
    batch_size: int = 512,
    compute: Compute = CPU,
    transform: Transform | None = None,
) -> dict[str, np.ndarray]:
    """{name: (N, width)} of `forward`'s outputs on store rows `index`, batch by batch; each image under one
    draw of `transform` (albumentations, seeded) when given, else as stored."""
    out = {name: np.empty((len(index), width), np.float32) for name, width in widths.items()}
    start = 0
    for x in image_batches(images, index, batch_size, compute.pin_memory, transform):
        with compute.autocast():
            outputs = forward(compute.to_device(x))
        for name, value in outputs.items():
            out[name][start : start + len(x)] = value.float().cpu().numpy()
        start += len(x)
    return out


@contextmanager
def evaluating(module: torch.nn.Module, compute: Compute) -> Iterator[None]:
    """`module` in eval mode on `compute`'s device for the block, then back on the device it was on."""
    where = next(module.parameters()).device
    module.eval().to(compute.device)
    try:
        yield
    finally:
        module.to(where)


def predict(
    model: Classifier, images: np.ndarray, index: np.ndarray, batch_size: int = 512, compute: Compute = CPU
) -> tuple[np.ndarray, np.ndarray]:
    """Logits (N, C) and encoder features (N, D) of store rows `index`, without augmentation."""

    def forward(x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = model.encoder(x)
        return {"logits": model.head(model.dropout(h)), "features": h}

    widths = {"logits": model.arch.num_classes, "features": model.encoder.feature_dim}
    with evaluating(model, compute):
        out = batched_outputs(forward, widths, images, index, batch_size, compute)
    return out["logits"], out["features"]


def encode(
    encoder: Encoder, images: np.ndarray, index: np.ndarray, batch_size: int = 512, compute: Compute = CPU
) -> np.ndarray:
    """Encoder features (N, D) of store rows `index`, without augmentation."""
    with evaluating(encoder, compute):
        out = batched_outputs(
            lambda x: {"features": encoder(x)}, {"features": encoder.feature_dim}, images, index, batch_size,
            compute,
        )  # fmt: skip
    return out["features"]


def augmented_logits(
    model: Classifier,
    images: np.ndarray,
    index: np.ndarray,
    transform: Transform,
    batch_size: int = 512,
    compute: Compute = CPU,
) -> np.ndarray:
    """Logits (N, C) of store rows `index`, each image under one draw of `transform`, in order."""
    with evaluating(model, compute):
        out = batched_outputs(
            lambda x: {"logits": model(x)}, {"logits": model.arch.num_classes}, images, index, batch_size,
            compute, transform,
        )  # fmt: skip
    return out["logits"]
