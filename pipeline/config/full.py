"""Every section at once: for `python -m pipeline check`, the benchmarks and the tests. Stages read only
their own sections (pipeline.config.<section>)."""

from __future__ import annotations

from pathlib import Path

from pipeline.config.base import load_params as _load
from pipeline.config.evaluate import EvaluateParams
from pipeline.config.pretrain import PretrainParams
from pipeline.config.pseudolabel import PseudolabelConfig, PseudolabelParams
from pipeline.config.student import StudentConfig, StudentParams
from pipeline.config.teacher import TeacherParams


class Params(PretrainParams, TeacherParams, PseudolabelParams, StudentParams, EvaluateParams):
    """The whole of params.yaml."""

    def round_config(self, name: str) -> tuple[PseudolabelConfig, StudentConfig]:  # type: ignore[override]
        """The pseudolabel and student sections of round `name`, with its overrides applied."""
        return PseudolabelParams.round_config(self, name), StudentParams.round_config(self, name)


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate every section of params.yaml; raises ConfigError naming every bad key."""
    return _load(path, Params)
