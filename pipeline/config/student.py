"""The `student` section: the noisy student of each round. Rounds may override it."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import Field, model_validator

from pipeline.config.base import ConfigError, Section, TrainingLength, merge, validate
from pipeline.config.common import MIN_WIDTH, Backbone, Common, ModelConfig, ValidationConfig


class StrongAugment(Section):
    """RandAugment-like: `num_ops` random ops at magnitude `magnitude` out of 10, then cutout."""

    num_ops: int = Field(ge=0, le=8)
    magnitude: int = Field(ge=0, le=10)
    cutout: float = Field(ge=0, lt=1, description="side of the cutout square as a share of the image side")
    backend: Literal["tensor", "albumentations"] = Field(
        description="tensor: whole batches at once (pipeline.augment_batch); albumentations: image by image"
    )


class OnlineConfig(Section):
    """`consistency: online`: the weak-view prediction is each step's target (pipeline.pseudo.online)."""

    mask: Literal["freematch", "softmatch", "fixed"] = Field(
        description="freematch: self-adaptive class thresholds; softmatch: truncated Gaussian weight; "
        "fixed: FixMatch's threshold"
    )
    threshold: float = Field(gt=0, le=1, description="mask fixed: accept when max probability >= this")
    momentum: float = Field(ge=0, lt=1, description="EMA momentum of the running statistics, per step")
    teacher_ema: float = Field(
        ge=0,
        lt=1,
        description="0: the student itself predicts the weak views; > 0: an EMA of its weights "
        "with this decay does (Mean Teacher)",
    )
    alignment: Literal["uniform", "labeled", "none"] = Field(
        description="distribution alignment towards a uniform prior or the labeled class shares; none: off"
    )


class StudentConfig(TrainingLength):
    """Length: passes over the round's pseudo-labeled images."""

    batch_labeled: int = Field(ge=1)
    batch_unlabeled: int = Field(ge=1)
    lr: float = Field(gt=0)
    weight_decay: float = Field(ge=0)
    backbone: Backbone | None = Field(description="None: model.backbone; a larger one needs init: scratch")
    width: int = Field(ge=MIN_WIDTH, le=512, description="small_resnet: >= model.width (Noisy Student)")
    depth: int = Field(ge=1, le=8, description="small_resnet: >= model.depth")
    dropout: float = Field(ge=0, lt=1)
    stochastic_depth: float = Field(ge=0, lt=1, description="drop probability of the last residual block")
    init: Literal["ssl", "previous", "scratch"]
    consistency: Literal["offline", "online"] = Field(
        description="offline: the round's table is the target; online: the weak view's prediction each step"
    )
    online: OnlineConfig
    hard_labels: bool
    unlabeled_weight: float = Field(ge=0)
    entropy_weight: float = Field(ge=0, description="lambda of the entropy-minimization term")
    entropy_warmup: float = Field(ge=0, le=1, description="share of steps over which lambda ramps up")
    strong: StrongAugment
    loader_workers: int = Field(
        ge=0, le=1, description="0: augment in the training process; 1: in a worker process that works ahead"
    )

    @model_validator(mode="after")
    def _online_on_batches(self) -> StudentConfig:
        if self.consistency == "online" and self.strong.backend != "tensor":
            raise ValueError("consistency: online augments whole batches: it needs strong.backend: tensor")
        return self


def check_student_arch(student: StudentConfig, model: ModelConfig, where: str) -> None:
    """Noisy Student: the student is not smaller than the teacher, and copies its weights only when it has
    the same architecture."""
    backbone, sizes = student.backbone or model.backbone, get_args(Backbone)
    if sizes.index(backbone) < sizes.index(model.backbone):
        raise ConfigError(f"{where}.backbone {backbone} is smaller than model.backbone {model.backbone}")
    small = backbone == model.backbone == "small_resnet"
    if small and (student.width < model.width or student.depth < model.depth):
        raise ConfigError(f"{where}.width/depth must be >= model.width/depth: the student is not smaller")
    same = backbone == model.backbone and (
        not small or (student.width, student.depth) == (model.width, model.depth)
    )
    if student.init != "scratch" and not same:
        raise ConfigError(
            f"{where}.init={student.init} copies the weights of model's {model.backbone} "
            f"({model.width}/{model.depth}), but the student is a larger {backbone} "
            f"({student.width}/{student.depth}); use init: scratch for a larger student"
        )


class StudentParams(Common):
    validation: ValidationConfig
    student: StudentConfig

    @model_validator(mode="after")
    def _not_smaller(self) -> StudentParams:
        check_student_arch(self.student, self.model, where="student")
        return self

    def round_config(self, name: str) -> StudentConfig:
        """The student section of round `name`, its overrides (`rounds.<name>.student`) applied."""
        override = self.round_spec(name).student
        cfg = validate(StudentConfig, merge(self.student.model_dump(), override), f"rounds.{name}.student.")
        check_student_arch(cfg, self.model, where=f"rounds.{name}.student" if override else "student")
        return cfg
