"""The `evaluate` section: test metrics of every round."""

from __future__ import annotations

from pydantic import Field

from pipeline.config.base import Section
from pipeline.config.common import Common, ValidationConfig


class EvaluateConfig(Section):
    ece_bins: int = Field(ge=2)


class EvaluateParams(Common):
    validation: ValidationConfig
    evaluate: EvaluateConfig
