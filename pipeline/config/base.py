"""What every config section shares: the frozen, strict pydantic base, the error type and the loader.

A stage reads params.yaml with `load_params(path, <its params model>)`: the top-level keys must all be known
sections, and the sections the model names are validated, so a bad params.yaml fails before any output is
written, with an error that names the key (``student.dropout: Input should be less than 1``). Unknown keys
are rejected. `python -m pipeline check` validates every section at once.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

SECTIONS = (
    "seed", "paths", "data", "model", "mlflow", "checkpoints", "compute",
    "pretrain", "teacher", "pseudolabel", "student", "rounds", "validation", "evaluate",
)  # fmt: skip


class ConfigError(ValueError):
    """params.yaml is invalid; the message names the key and what is allowed."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TrainingLength(Section):
    """How long a loop trains: `epochs` passes over its images, at least `min_steps` (few images still train
    long enough) and at most `max_steps` (many images train no longer)."""

    epochs: float = Field(gt=0, description="passes over the loop's images")
    min_steps: int = Field(ge=1, description="the floor, in steps")
    max_steps: int = Field(ge=1, description="the cap, in steps")

    @model_validator(mode="after")
    def _floor_below_cap(self) -> TrainingLength:
        if self.min_steps > self.max_steps:
            raise ValueError(f"min_steps {self.min_steps} > max_steps {self.max_steps}")
        return self

    def total_steps(self, images: int, batch: int) -> int:
        """ceil(epochs * images / batch), clipped to [min_steps, max_steps]."""
        return min(max(math.ceil(self.epochs * images / batch), self.min_steps), self.max_steps)


class StageParams(Section):
    """The sections one stage reads; the others are left to the stages that read them."""

    model_config = ConfigDict(extra="ignore", frozen=True)


T = TypeVar("T", bound=BaseModel)


def validate(kind: type[T], data: Any, prefix: str = "") -> T:
    """`kind` validated from `data`; a ConfigError naming every bad key (under `prefix`) otherwise."""
    try:
        return kind.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_errors(err, prefix)) from None


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Nested update of `base` by `override` (a new dict)."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def format_errors(err: ValidationError, prefix: str = "") -> str:
    lines = []
    for e in err.errors():
        key = prefix + ".".join(str(p) for p in e["loc"])
        lines.append(f"  {key or '(top level)'}: {e['msg']}")
    return "invalid params.yaml:\n" + "\n".join(lines)


def read_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    """params.yaml as a mapping whose top-level keys are all known sections."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"params file not found: {path.resolve()}")
    raw = yaml.safe_load(path.read_text())
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise ConfigError(
            f"invalid params.yaml:\n  {unknown[0]}: not a section (known: {', '.join(SECTIONS)})"
        )
    return raw


def load_params(path: str | Path, kind: type[T]) -> T:
    """Read params.yaml and validate the sections `kind` declares; raises ConfigError naming every bad key."""
    return validate(kind, read_params(path))
