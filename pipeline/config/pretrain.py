"""The `pretrain` section: SSL pretraining's shared settings and the view policy.

Each method's own settings (`pretrain.methods.<name>`) are validated by the method's module, beside its code
(pipeline.ssl.methods), so adding a method is one file there.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from pipeline.config.base import Section, TrainingLength
from pipeline.config.common import Common


class ViewPolicy(Section):
    """Albumentations view policy for SSL pretraining (pipeline.ssl.views). Colour images also get their
    saturation and hue jittered and are made grey at random, so two views of an image cannot be matched by
    their colour alone (SimCLR, Chen et al. 2020, sec. 3 and fig. 5); grayscale images ignore those keys."""

    crop_scale: tuple[float, float] = (0.3, 1.0)
    hflip: float = Field(0.5, ge=0, le=1)
    jitter: float = Field(0.8, ge=0, le=1, description="probability of colour jitter")
    brightness: float = Field(0.4, ge=0, le=1)
    contrast: float = Field(0.4, ge=0, le=1)
    saturation: float = Field(0.4, ge=0, le=1, description="colour images only")
    hue: float = Field(0.1, ge=0, le=0.5, description="colour images only")
    grayscale: float = Field(0.2, ge=0, le=1, description="probability of a grey view; colour images only")
    blur: float = Field(0.0, ge=0, le=1, description="probability of Gaussian blur")

    @model_validator(mode="after")
    def _scale_in_range(self) -> ViewPolicy:
        lo, hi = self.crop_scale
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"crop_scale must satisfy 0 < min <= max <= 1, got {self.crop_scale}")
        return self


class MethodSection(Section):
    """What every method's section has: its view policy and a multiplier of `pretrain.lr` for the method."""

    views: ViewPolicy
    lr_scale: float = Field(gt=0, description="the method trains at pretrain.lr * lr_scale")


class PretrainConfig(TrainingLength):
    """Length: passes over labeled + unlabeled images, whole epochs (the kNN monitor and resume points run
    at their end)."""

    method: str = Field(description="a method of pipeline.ssl.registry, e.g. simclr or vicreg, or none")
    batch_size: int = Field(ge=2)
    warm_start: bool = Field(
        description="continue from the encoder the last run left at paths.encoder (same architecture) for "
        "warm_start_epochs, instead of training from scratch: new data costs a short schedule, and the "
        "encoder then depends on the runs before"
    )
    warm_start_epochs: int = Field(ge=1, description="epochs of a warm start (no min_steps floor)")
    views_backend: Literal["tensor", "albumentations"] = Field(
        description="tensor: the views of whole batches at once (pipeline.ssl.views_batch); albumentations: "
        "image by image in the loader (pipeline.ssl.views, the reference)"
    )
    lr: float = Field(gt=0, description="peak learning rate per 256 images (SGD, cosine schedule)")
    weight_decay: float = Field(ge=0)
    projection_dim: int = Field(ge=2, description="output of projection heads (and hidden width of MLPs)")
    knn_k: int = Field(ge=1)
    knn_test_images: int = Field(ge=0, description="test images used by the per-epoch kNN monitor")
    methods: dict[str, dict[str, Any]] = Field(description="each method's settings, by method name")


class PretrainParams(Common):
    pretrain: PretrainConfig
