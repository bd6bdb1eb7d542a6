"""The `teacher` section: the round-0 model trained on the labeled images."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from pipeline.config.base import TrainingLength
from pipeline.config.common import Common, ValidationConfig


class TeacherConfig(TrainingLength):
    """Length: passes over the labeled images."""

    batch_size: int = Field(ge=1)
    lr: float = Field(gt=0)
    encoder_lr_scale: float = Field(ge=0, description="encoder lr = lr * this; 0 freezes the encoder")
    select: Literal["validation", "rule"] = Field(
        description="validation: with a validation set, train a linear probe and a fine-tuned teacher and "
        "keep the better on it; rule (or no validation set): freeze_encoder_below decides"
    )
    freeze_encoder_below: float = Field(
        ge=0, description="labels per class under which the encoder stays frozen (linear probe); 0: never"
    )
    weight_decay: float = Field(ge=0)
    dropout: float = Field(ge=0, lt=1)


class TeacherParams(Common):
    validation: ValidationConfig
    teacher: TeacherConfig
