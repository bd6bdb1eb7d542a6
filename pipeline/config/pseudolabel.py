"""The `pseudolabel` section: how a round labels the pool, and the OOD filter. Rounds may override it."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from pipeline.config.base import Section, merge, validate
from pipeline.config.common import Common


class OODConfig(Section):
    """Out-of-distribution filter (pipeline.pseudo.ood), calibrated on held-out labeled images."""

    method: Literal["msp", "energy", "mahalanobis", "knn", "propagation", "none"] = Field(
        description="msp / energy: teacher logits; mahalanobis: teacher features; knn, propagation: SSL "
        "embedding (propagation: on pseudolabel.propagation's graph)"
    )
    k: int = Field(ge=1, description="knn: distance to the k-th nearest labeled image")
    keep_quantile: float = Field(
        gt=0, le=1, description="share of held-out labeled images the threshold keeps"
    )
    shrinkage: float = Field(gt=0, le=1, description="mahalanobis: covariance shrinkage towards the identity")
    folds: int = Field(
        ge=2, description="msp / energy / mahalanobis / propagation: folds of the held-out calibration"
    )
    min_separation: float = Field(
        ge=0,
        le=1,
        description="AUROC of pool vs held-out labeled scores under which the filter rejects "
        "nothing and down-weights instead (it cannot tell the pool from the labeled images)",
    )


class PropagationConfig(Section):
    """Label propagation over a kNN graph of labeled + pool features (pipeline.pseudo.propagation)."""

    weight: float = Field(
        ge=0, le=1, description="share of the propagated distribution in the pool's probabilities: "
        "0 = the teacher's alone (propagation off), 1 = propagation alone"
    )  # fmt: skip
    features: Literal["teacher", "ssl"] = Field(
        description="the graph's space: the teacher's own features (Iscen et al.) or the SSL embedding"
    )
    temperature: float = Field(
        gt=0, le=1, description="sharpening of the propagated distributions, p^(1/T) renormalised (MixMatch)"
    )
    k: int = Field(ge=1, description="neighbours per image in the graph")
    alpha: float = Field(gt=0, lt=1, description="how far labels spread along the graph (Zhou et al.: 0.99)")
    exact_max: int = Field(
        ge=1, description="up to this many images the graph's neighbour search is exact (time N^2); beyond, "
        "an inverted-file search (pipeline.pseudo.neighbours)"
    )  # fmt: skip


class PseudolabelConfig(Section):
    temperature: float = Field(gt=0, description="softmax temperature of teacher predictions")
    tta: int = Field(ge=0, le=32, description="weakly augmented views averaged with the plain prediction")
    mode: Literal["threshold", "softmatch", "flexmatch", "freematch", "class_balanced"] = Field(
        description="how pseudo-labels are accepted and weighted (pipeline.pseudo.select)"
    )
    threshold: float = Field(ge=0, le=1, description="accept when max probability >= threshold")
    weighting: Literal["confidence", "uniform"] = Field(description="weight of an accepted pseudo-label")
    per_class: int = Field(ge=0, description="class_balanced quota per class; 0 = pool size / classes")
    alignment: Literal["uniform", "labeled", "none"] = Field(
        description="distribution alignment of the pool's predictions towards a uniform prior or the labeled "
        "class shares, before acceptance; none: off"
    )
    propagation: PropagationConfig
    batch_size: int = Field(ge=1)
    ood: OODConfig


class PseudolabelParams(Common):
    pseudolabel: PseudolabelConfig

    def round_config(self, name: str) -> PseudolabelConfig:
        """The pseudolabel section of round `name`, its overrides (`rounds.<name>.pseudolabel`) applied."""
        override = self.round_spec(name).pseudolabel
        return validate(
            PseudolabelConfig, merge(self.pseudolabel.model_dump(), override), f"rounds.{name}.pseudolabel."
        )
