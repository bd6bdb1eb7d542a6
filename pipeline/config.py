"""Typed, validated configuration: params.yaml -> one frozen pydantic model per section.

Every stage calls `load_params()` first, so a bad params.yaml fails before any output is written, with an
error that names the key (``student.dropout: Input should be less than 1``). Unknown keys are rejected.
Rounds may override `pseudolabel` and `student` keys for themselves (`rounds.r2.student.steps: 600`);
`round_config()` merges such an override over the shared section and validates the result.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

TEACHER_ROUND = "r0"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Paths(Section):
    """Every file and folder the pipeline reads or writes, declared once; dvc.yaml uses the same keys."""

    labeled: str = Field(description="image folders data/labeled/<class>/*")
    unlabeled: str = Field(description="any nesting of images, no labels")
    test: str = Field(description="image folders data/test/<class>/*")
    analysis: str = Field(description="CSV path,label of unlabeled images: analysis only, never training")
    prepared: str = Field(description="manifest.parquet + images.npy + classes.json")
    encoder: str = Field(description="SSL-pretrained encoder")
    rounds: str = Field(description="one folder per round: r0 = teacher, r1.. = students")
    pseudolabels: str = Field(description="one parquet table per round")
    metrics: str
    plots: str


class DataConfig(Section):
    image_size: int = Field(ge=8, le=512)
    channels: Literal[1, 3] = Field(description="1 = grayscale, 3 = RGB; every image is converted to this")


class ModelConfig(Section):
    """The CNN encoder: a stem and two residual stages, widths (w, 2w, 4w); features = 4w."""

    width: int = Field(ge=4, le=512)
    depth: int = Field(ge=1, le=8, description="residual blocks per stage")


class ViewPolicy(Section):
    """Albumentations view policy for SSL pretraining (works for grayscale and color)."""

    crop_scale: tuple[float, float] = (0.3, 1.0)
    hflip: float = Field(0.5, ge=0, le=1)
    jitter: float = Field(0.8, ge=0, le=1, description="probability of brightness/contrast jitter")
    brightness: float = Field(0.4, ge=0, le=1)
    contrast: float = Field(0.4, ge=0, le=1)
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


class SimCLRConfig(MethodSection):
    temperature: float = Field(gt=0, description="NT-Xent temperature")


class MoCoConfig(MethodSection):
    temperature: float = Field(gt=0)
    queue_size: int = Field(ge=1, description="negatives kept from earlier batches")
    momentum: float = Field(ge=0, lt=1, description="EMA momentum of the key encoder")


class BYOLConfig(MethodSection):
    momentum: float = Field(ge=0, lt=1, description="base EMA momentum of the target, raised to 1 by cosine")


class DINOConfig(MethodSection):
    out_dim: int = Field(ge=2, description="dimensions K of the DINO head output")
    student_temperature: float = Field(gt=0)
    teacher_temperature: float = Field(gt=0)
    center_momentum: float = Field(ge=0, lt=1)
    momentum: float = Field(ge=0, lt=1, description="base EMA momentum of the teacher, raised to 1 by cosine")


class SwAVConfig(MethodSection):
    prototypes: int = Field(ge=2)
    temperature: float = Field(gt=0)
    epsilon: float = Field(gt=0, description="Sinkhorn entropy regularization")
    sinkhorn_iterations: int = Field(ge=1)
    freeze_prototypes_steps: int = Field(ge=0, description="prototypes stay fixed this many first steps")


class BarlowTwinsConfig(MethodSection):
    lambd: float = Field(ge=0, description="weight of the off-diagonal (redundancy) term")


class VICRegConfig(MethodSection):
    sim_weight: float = Field(ge=0)
    var_weight: float = Field(ge=0)
    cov_weight: float = Field(ge=0)


class SimMIMConfig(MethodSection):
    mask_ratio: float = Field(gt=0, lt=1)
    patch: int = Field(ge=1, description="side of a masked square, pixels; must divide image_size / 4 * 4")


class RotationConfig(MethodSection):
    pass


class HybridConfig(MethodSection):
    """One encoder, a masked-reconstruction decoder and an NT-Xent head; losses combined by `combine`."""

    mask_ratio: float = Field(ge=0, lt=1, description="0 reconstructs the unmasked input (autoencoding)")
    patch: int = Field(ge=1)
    temperature: float = Field(gt=0)
    combine: Literal["fixed", "warmup", "uncertainty"] = Field(
        description="fixed weights; warmup: contrastive weight ramps up; uncertainty: learned log-variances"
    )
    reconstruction_weight: float = Field(ge=0)
    contrastive_weight: float = Field(ge=0)
    warmup_epochs: float = Field(ge=0, description="epochs of the contrastive ramp (combine: warmup)")


class MethodConfigs(Section):
    simclr: SimCLRConfig
    moco: MoCoConfig
    byol: BYOLConfig
    dino: DINOConfig
    swav: SwAVConfig
    barlow_twins: BarlowTwinsConfig
    vicreg: VICRegConfig
    simmim: SimMIMConfig
    rotation: RotationConfig
    hybrid: HybridConfig


SSLMethod = Literal[
    "simclr", "moco", "byol", "dino", "swav", "barlow_twins", "vicreg", "simmim", "rotation", "hybrid"
]


class PretrainConfig(Section):
    method: SSLMethod
    epochs: int = Field(ge=1)
    batch_size: int = Field(ge=2)
    lr: float = Field(gt=0, description="peak learning rate per 256 images (SGD, cosine schedule)")
    weight_decay: float = Field(ge=0)
    projection_dim: int = Field(ge=2, description="output of projection heads (and hidden width of MLPs)")
    knn_k: int = Field(ge=1)
    knn_test_images: int = Field(ge=0, description="test images used by the per-epoch kNN monitor")
    methods: MethodConfigs

    def method_config(self) -> BaseModel:
        return getattr(self.methods, self.method)


class TeacherConfig(Section):
    steps: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    lr: float = Field(gt=0)
    encoder_lr_scale: float = Field(ge=0, description="encoder lr = lr * this; 0 freezes the encoder")
    freeze_encoder_below: float = Field(
        ge=0, description="labels per class under which the encoder stays frozen (linear probe); 0: never"
    )
    weight_decay: float = Field(ge=0)
    dropout: float = Field(ge=0, lt=1)


class OODConfig(Section):
    """Out-of-distribution filter (pipeline.pseudo.ood), calibrated on held-out labeled images."""

    method: Literal["msp", "energy", "mahalanobis", "knn", "none"] = Field(
        description="msp / energy: teacher logits; mahalanobis: teacher features; knn: SSL embedding"
    )
    k: int = Field(ge=1, description="knn: distance to the k-th nearest labeled image")
    keep_quantile: float = Field(
        gt=0, le=1, description="share of held-out labeled images the threshold keeps"
    )
    shrinkage: float = Field(gt=0, le=1, description="mahalanobis: covariance shrinkage towards the identity")
    folds: int = Field(ge=2, description="msp / energy / mahalanobis: folds of the held-out calibration")


class PseudolabelConfig(Section):
    temperature: float = Field(gt=0, description="softmax temperature of teacher predictions")
    tta: int = Field(ge=0, le=32, description="weakly augmented views averaged with the plain prediction")
    mode: Literal["threshold", "softmatch", "flexmatch", "freematch", "class_balanced"] = Field(
        description="how pseudo-labels are accepted and weighted (pipeline.pseudo.select)"
    )
    threshold: float = Field(ge=0, le=1, description="accept when max probability >= threshold")
    weighting: Literal["confidence", "uniform"] = Field(description="weight of an accepted pseudo-label")
    per_class: int = Field(ge=0, description="class_balanced quota per class; 0 = pool size / classes")
    batch_size: int = Field(ge=1)
    ood: OODConfig


class StrongAugment(Section):
    """RandAugment-like: `num_ops` random ops at magnitude `magnitude` out of 10, then cutout."""

    num_ops: int = Field(ge=0, le=8)
    magnitude: int = Field(ge=0, le=10)
    cutout: float = Field(ge=0, lt=1, description="side of the cutout square as a share of the image side")
    backend: Literal["tensor", "albumentations"] = Field(
        description="tensor: whole batches at once (pipeline.augment_batch); albumentations: image by image"
    )


class StudentConfig(Section):
    steps: int = Field(ge=1)
    batch_labeled: int = Field(ge=1)
    batch_unlabeled: int = Field(ge=1)
    lr: float = Field(gt=0)
    weight_decay: float = Field(ge=0)
    width: int = Field(ge=4, le=512, description="student width, >= model.width (Noisy Student)")
    depth: int = Field(ge=1, le=8)
    dropout: float = Field(ge=0, lt=1)
    stochastic_depth: float = Field(ge=0, lt=1, description="drop probability of the last residual block")
    init: Literal["ssl", "previous", "scratch"]
    hard_labels: bool
    unlabeled_weight: float = Field(ge=0)
    entropy_weight: float = Field(ge=0, description="lambda of the entropy-minimization term")
    entropy_warmup: float = Field(ge=0, le=1, description="share of steps over which lambda ramps up")
    strong: StrongAugment
    loader_workers: int = Field(
        ge=0, le=1, description="0: augment in the training process; 1: in a worker process that works ahead"
    )


class RoundConfig(Section):
    prev: str
    pseudolabel: dict[str, Any] = Field(default_factory=dict, description="overrides for this round")
    student: dict[str, Any] = Field(default_factory=dict, description="overrides for this round")


class EvaluateConfig(Section):
    ece_bins: int = Field(ge=2)


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


class MlflowConfig(Section):
    experiment: str = Field(min_length=1)
    registered_model: str = Field(min_length=1)  # the final round's student is registered under this name
    alias: str = Field(
        pattern=r"^[A-Za-z_][A-Za-z0-9_-]*$"
    )  # ... and this alias points at its newest version


class Params(Section):
    seed: int = Field(ge=0)
    paths: Paths
    data: DataConfig
    model: ModelConfig
    mlflow: MlflowConfig
    checkpoints: CheckpointsConfig
    compute: ComputeConfig
    pretrain: PretrainConfig
    teacher: TeacherConfig
    pseudolabel: PseudolabelConfig
    student: StudentConfig
    rounds: dict[str, RoundConfig]
    evaluate: EvaluateConfig

    @model_validator(mode="after")
    def _rounds_chain(self) -> Params:
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
        _check_student_arch(self.student, self.model, where="student")
        return self

    def round_order(self) -> list[str]:
        """Rounds in chain order, teacher first: ['r0', 'r1', 'r2', ...]."""
        depth = {TEACHER_ROUND: 0}

        def level(name: str) -> int:
            if name not in depth:
                depth[name] = level(self.rounds[name].prev) + 1
            return depth[name]

        return sorted({TEACHER_ROUND, *self.rounds}, key=lambda r: (level(r), r))

    def round_config(self, name: str) -> tuple[PseudolabelConfig, StudentConfig]:
        """The pseudolabel and student sections for one round, with that round's overrides applied."""
        if name not in self.rounds:
            raise ConfigError(f"round '{name}' is not in params.yaml rounds (known: {sorted(self.rounds)})")
        spec = self.rounds[name]
        pl = _validate(PseudolabelConfig, self.pseudolabel, spec.pseudolabel, f"rounds.{name}.pseudolabel.")
        st = _validate(StudentConfig, self.student, spec.student, f"rounds.{name}.student.")
        _check_student_arch(st, self.model, where=f"rounds.{name}.student" if spec.student else "student")
        return pl, st


def _check_student_arch(student: StudentConfig, model: ModelConfig, where: str) -> None:
    if student.width < model.width or student.depth < model.depth:
        raise ConfigError(f"{where}.width/depth must be >= model.width/depth: the student is not smaller")
    if student.init != "scratch" and (student.width, student.depth) != (model.width, model.depth):
        raise ConfigError(
            f"{where}.init={student.init} copies weights of the model.width/depth architecture "
            f"({model.width}/{model.depth}), but the student is {student.width}/{student.depth}; "
            "use init: scratch for a larger student"
        )


class ConfigError(ValueError):
    """params.yaml is invalid; the message names the key and what is allowed."""


def _validate(kind: type[Section], base: Section, override: dict[str, Any], prefix: str):
    try:
        return kind.model_validate(_merge(base.model_dump(), override))
    except ValidationError as err:
        raise ConfigError(_format_errors(err, prefix=prefix)) from None


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _format_errors(err: ValidationError, prefix: str = "") -> str:
    lines = []
    for e in err.errors():
        key = prefix + ".".join(str(p) for p in e["loc"])
        lines.append(f"  {key or '(top level)'}: {e['msg']}")
    return "invalid params.yaml:\n" + "\n".join(lines)


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate params.yaml; raises ConfigError naming every bad key."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"params file not found: {path.resolve()}")
    raw = yaml.safe_load(path.read_text())
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    try:
        return Params.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format_errors(err)) from None
