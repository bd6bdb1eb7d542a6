"""The sections every stage reads: seed, paths, data, model, MLflow, checkpoints, compute and the rounds."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from pipeline.config.base import ConfigError, Section, StageParams

TEACHER_ROUND = "r0"
# oneDNN's AVX2 backward of a 1x1 stride-2 convolution with 4 input channels (the first shortcut at width 4)
# never returns under deterministic algorithms with channels_last; 8 channels and more are fine.
MIN_WIDTH = 8


class Paths(Section):
    """Every file and folder the pipeline reads or writes, declared once; dvc.yaml uses the same keys."""

    labeled: str = Field(description="image folders data/labeled/<class>/*")
    unlabeled: str = Field(description="any nesting of images, no labels")
    test: str = Field(description="image folders data/test/<class>/*")
    analysis: str = Field(description="CSV path,label of unlabeled images: analysis only, never training")
    prepared: str = Field(description="manifest.parquet + images.npy + classes.json")
    weights: str = Field(description="folder of pretrained weights files (model.weights); a dep of pretrain")
    encoder: str = Field(description="SSL-pretrained encoder")
    rounds: str = Field(description="one folder per round: r0 = teacher, r1.. = students")
    pseudolabels: str = Field(description="one parquet table per round")
    metrics: str
    plots: str


class DataConfig(Section):
    image_size: int = Field(ge=8, le=512)
    channels: Literal[1, 3] = Field(description="1 = grayscale, 3 = RGB; every image is converted to this")


# pipeline.backbones, from the smallest to the largest
Backbone = Literal["small_resnet", "wrn_28_2", "resnet18", "resnet34", "resnet50"]


class ModelConfig(Section):
    """The encoder of pretrain and the teacher: a backbone of pipeline.backbones by name."""

    backbone: Backbone
    stem: Literal["auto", "cifar", "imagenet"] = Field(
        description="auto: imagenet with model.weights or images over 32 px, else cifar"
    )
    weights: str | None = Field(
        description="a torchvision ResNet state dict on disk (resnet backbones); nothing is downloaded"
    )
    width: int = Field(ge=MIN_WIDTH, le=512, description="small_resnet: widths (w, 2w, 4w); >= MIN_WIDTH")
    depth: int = Field(ge=1, le=8, description="small_resnet: residual blocks per stage")

    @model_validator(mode="after")
    def _weights_fit(self) -> ModelConfig:
        if self.weights is not None and not self.backbone.startswith("resnet"):
            raise ValueError(
                f"model.weights: torchvision weights fit the resnet backbones, not {self.backbone}"
            )
        return self


class CheckpointsConfig(Section):
    """Local state: resume points of the training stages (pipeline.resume) and prepare's file hashes.
    Not in dvc.yaml, so changes rerun nothing."""

    dir: str = Field(min_length=1, description="folder of local state; not a DVC output")
    every_steps: int = Field(
        ge=1, description="teacher, student: one every this many steps (pretrain: epoch)"
    )


class ComputeConfig(Section):
    """Where and how pretrain, teacher, pseudolabel, student and evaluate compute (pipeline.compute)."""

    device: Literal["cpu", "cuda", "auto"] = Field(
        description="cuda needs a visible GPU; auto takes one when there is one (the numbers then depend on "
        "the machine: for reproducible runs name the device)"
    )
    precision: Literal["fp32", "bf16"] = Field(description="bf16: autocast of convolutions and matmuls")
    compile: bool = Field(description="torch.compile the training loops' model")
    cpu_kernels: Literal["avx2", "native"] = Field(
        description="avx2: PyTorch, oneDNN and MKL use their AVX2 kernels on any x86-64 CPU (the same "
        "numbers on AVX2 and AVX-512 machines); native: the fastest kernels the CPU has"
    )


class MlflowConfig(Section):
    experiment: str = Field(min_length=1)
    registered_model: str = Field(min_length=1)  # the final round's student is registered under this name
    alias: str = Field(
        pattern=r"^[A-Za-z_][A-Za-z0-9_-]*$"
    )  # ... and this alias points at its newest version
    server_wait_s: float = Field(
        ge=0,
        description="how long a stage waits, before saving its outputs, for a tracking server that "
        "stopped answering mid-stage (metrics wait in memory meanwhile); then it stops, resumable",
    )


class ValidationConfig(Section):
    """Labeled images held out from training to choose models (the teacher's mode, the promoted round):
    `per_class` per class, drawn by the seed, when every class keeps `min_train_per_class` to train on."""

    per_class: int = Field(ge=0, description="images of each class held out; 0: never hold out")
    min_train_per_class: int = Field(
        ge=1, description="hold out only when every class keeps at least this many labeled images"
    )


class RoundConfig(Section):
    prev: str
    pseudolabel: dict[str, Any] = Field(default_factory=dict, description="overrides for this round")
    student: dict[str, Any] = Field(default_factory=dict, description="overrides for this round")


class Common(StageParams):
    """What every stage reads. A stage's own params model adds its sections to these."""

    seed: int = Field(ge=0)
    paths: Paths
    data: DataConfig
    model: ModelConfig
    mlflow: MlflowConfig
    checkpoints: CheckpointsConfig
    compute: ComputeConfig
    rounds: dict[str, RoundConfig]

    @model_validator(mode="after")
    def _weights_tracked(self) -> Common:
        weights = self.model.weights
        if weights is not None and not Path(weights).is_relative_to(self.paths.weights):
            raise ValueError(
                f"model.weights: {weights} is not under paths.weights ({self.paths.weights}), the folder "
                "DVC watches: put the file there so a new file reruns pretrain"
            )
        return self

    @model_validator(mode="after")
    def _rounds_chain(self) -> Common:
        if TEACHER_ROUND in self.rounds:
            raise ValueError(f"rounds: '{TEACHER_ROUND}' is the teacher and cannot be a round")
        known = {TEACHER_ROUND, *self.rounds}
        for name, spec in self.rounds.items():
            if spec.prev not in known:
                raise ValueError(f"rounds.{name}.prev: '{spec.prev}' is not a round (known: {sorted(known)})")
        for name in self.rounds:  # every chain must end at the teacher, with no cycle
            seen, cur = set(), name
            while cur != TEACHER_ROUND:
                if cur in seen:
                    raise ValueError(f"rounds.{name}: the chain of 'prev' loops through '{cur}'")
                seen.add(cur)
                cur = self.rounds[cur].prev
        return self

    def round_order(self) -> list[str]:
        """Rounds in chain order, teacher first: ['r0', 'r1', 'r2', ...]."""
        depth = {TEACHER_ROUND: 0}

        def level(name: str) -> int:
            if name not in depth:
                depth[name] = level(self.rounds[name].prev) + 1
            return depth[name]

        return sorted({TEACHER_ROUND, *self.rounds}, key=lambda r: (level(r), r))

    def round_spec(self, name: str) -> RoundConfig:
        if name not in self.rounds:
            raise ConfigError(f"round '{name}' is not in params.yaml rounds (known: {sorted(self.rounds)})")
        return self.rounds[name]
