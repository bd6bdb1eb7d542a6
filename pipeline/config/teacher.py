"""The `teacher` section: the round-0 model trained on the labeled images."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from pipeline.config.base import TrainingLength
from pipeline.config.common import Common, ValidationConfig


class TeacherConfig(TrainingLength):
    """Length: passes over the labeled images."""

    batch_size: int = Field(ge=1)
    lr: float = Field(gt=0)
    encoder_lr_scale: float = Field(ge=0, description="encoder lr = lr * this; 0 freezes the encoder")
    select: Literal["validation", "rule"] = Field(
        description="validation: train each of `candidates` and keep the best on the validation set, or "
        "without one by cross-fitting the labeled images (cross_fit_folds); rule: freeze_encoder_below "
        "decides"
    )
    cross_fit_folds: int = Field(
        ge=0,
        description="select: validation without a validation set: folds of the labeled images (at most "
        "the fewest labels of a class; under 2 of them, or 0: the rule decides)",
    )
    candidates: list[Literal["probe", "finetune", "scratch"]] = Field(
        min_length=1,
        description="select: validation: the teachers tried (finetune only with encoder_lr_scale > 0)",
    )
    scratch_lr: float = Field(gt=0, description="peak lr of the scratch candidate (the whole network)")
    freeze_encoder_below: float = Field(
        ge=0, description="labels per class under which the encoder stays frozen (linear probe); 0: never"
    )
    weight_decay: float = Field(ge=0)
    dropout: float = Field(ge=0, lt=1)
    augment_backend: Literal["tensor", "albumentations"] = Field(
        description="the weak augmentation (flip + shift): tensor on whole batches in the loop "
        "(pipeline.augment_weak), albumentations image by image in the loader (pipeline.augment)"
    )

    @field_validator("candidates")
    @classmethod
    def _unique(cls, candidates: list[str]) -> list[str]:
        if len(set(candidates)) != len(candidates):
            raise ValueError(f"candidates are listed twice: {candidates}")
        return candidates


class TeacherParams(Common):
    validation: ValidationConfig
    teacher: TeacherConfig
