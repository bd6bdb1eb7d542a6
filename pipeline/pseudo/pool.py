"""What a round's teacher says about the unlabeled pool: its probabilities (with test-time augmentation),
the features the OOD filter scores in, and the filter's calibrated decision."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from pipeline import augment
from pipeline.compute import CPU, Compute
from pipeline.config.pseudolabel import OODConfig, PropagationConfig, PseudolabelConfig
from pipeline.data.store import Prepared, Split
from pipeline.distributed import SINGLE, World
from pipeline.inference import augmented_logits, encode, predict
from pipeline.losses.semi import align_distribution, class_prior
from pipeline.metrics import ood_auroc
from pipeline.models import Classifier, Encoder
from pipeline.pseudo.ood import EMBEDDING_METHODS, calibrate_ood_threshold, ood_scores, threshold_interval
from pipeline.pseudo.propagation import label_propagation
from pipeline.pseudo.report import pseudo_label_stats, pseudo_label_table
from pipeline.pseudo.select import select_pseudo_labels, softmax


def tta_probabilities(
    model: Classifier,
    images: np.ndarray,
    index: np.ndarray,
    logits: np.ndarray,
    temperature: float,
    views: int,
    image_size: int,
    seed: int,
    batch_size: int = 512,
    compute: Compute = CPU,
) -> np.ndarray:
    """Test-time augmentation: softmax(logits / T) averaged over the plain images (`logits`) and `views`
    weakly augmented draws (flip + shift, seeded), (N, C). views=0 is the plain softmax."""
    probs = softmax(logits, temperature)
    for view in range(views):
        transform = augment.weak(image_size, seed + view)
        view_logits = augmented_logits(model, images, index, transform, batch_size, compute)
        probs = probs + softmax(view_logits, temperature)
    return probs / (1 + views)


@dataclass(frozen=True)
class PoolPredictions:
    """What the teacher says about the pool, in pool order."""

    probs: np.ndarray  # (N, C) its probabilities (temperature, TTA)
    features: np.ndarray  # (N, D) its own features (the encoder part of the classifier)
    embedding: np.ndarray | None  # (N, E) the SSL embedding, when the OOD filter or propagation scores in it


def predict_pool(
    *,
    teacher: Classifier,
    encoder: Encoder,
    images: np.ndarray,
    index: np.ndarray,
    cfg: PseudolabelConfig,
    image_size: int,
    seed: int,
    compute: Compute = CPU,
    world: World = SINGLE,
) -> PoolPredictions:
    """The teacher's probabilities of store rows `index` (temperature, TTA), its features, and the SSL
    embedding where `cfg` needs it (knn OOD scores, propagation over SSL features). Under torchrun (`world`)
    each process predicts a contiguous chunk, and every process gets all, in order."""
    index = world.chunk(index)
    logits, features = predict(teacher, images, index, cfg.batch_size, compute)
    probs = tta_probabilities(
        teacher, images, index, logits, cfg.temperature, cfg.tta, image_size, seed, cfg.batch_size, compute
    )
    embedding = None
    if uses_embedding(cfg):
        embedding = world.gather(encode(encoder, images, index, compute=compute))
    return PoolPredictions(world.gather(probs), world.gather(features), embedding)


def uses_embedding(cfg: PseudolabelConfig) -> bool:
    """Whether the round scores anything in the SSL embedding rather than the teacher's features."""
    propagation = cfg.propagation.weight > 0 and cfg.propagation.features == "ssl"
    return cfg.ood.method in EMBEDDING_METHODS or propagation


# OODDecision.separation from which the pool looks unlike the labeled images (clean: about 0.5); measured with
# 0 / 50 / 100 % of the pool from unlabeled classes: 0.48 / 0.65 / 0.83 (propagation), 0.52 / 0.61 / 0.77 kNN
UNLIKE_LABELED = 0.75


@dataclass(frozen=True)
class OODDecision:
    """The filter's decision on the pool. It rejects the images scoring above `threshold` when it can tell
    the pool from held-out labeled images (`separation`, an AUROC, at least `ood.min_separation`). When it
    cannot, the pool looks like the labeled images to it and a hard cut would reject at random: `soft`, no
    image is rejected and those past the threshold are down-weighted (`weight`)."""

    scores: np.ndarray  # (N,) of the pool, higher = more out of distribution (0 with the filter off)
    held_out: np.ndarray  # held-out scores of the labeled images the threshold was calibrated on
    threshold: float  # inf with the filter off
    separation: float = float("nan")  # AUROC of pool scores against held-out scores (0.5: indistinguishable)
    soft: bool = False
    interval: tuple[float, float] = (float("nan"), float("nan"))  # 90 % bootstrap interval of the threshold

    def stats(self) -> dict[str, float]:
        """ood/* as logged (-1 where undefined: the filter off): the threshold, its bootstrap interval and
        the pool's rejected share at either end of it, the separation, whether the filter went soft."""
        low, high = self.interval
        finite = {
            "ood/threshold": self.threshold,
            "ood/threshold_low": low,
            "ood/threshold_high": high,
            "ood/rejected_rate_at_low": (self.scores > low).mean() if np.isfinite(low) else np.nan,
            "ood/rejected_rate_at_high": (self.scores > high).mean() if np.isfinite(high) else np.nan,
            "ood/separation_auroc": self.separation,
        }
        return {
            **{key: float(value) if np.isfinite(value) else -1.0 for key, value in finite.items()},
            "ood/soft": float(self.soft),
        }

    def warnings(self, round_name: str) -> list[str]:
        """One warning when the pool looks unlike the labeled images (separation >= UNLIKE_LABELED)."""
        if not self.separation >= UNLIKE_LABELED:  # NaN too: the filter off
            return []
        return [
            f"{round_name}: the pool looks unlike the labeled images to the OOD filter (separation AUROC "
            f"{self.separation:.2f}; alike: 0.5). Much of it may be of classes nobody labeled, and rounds "
            f"trained on it can make the model worse: look at the pool images of highest ood_score in "
            f"pseudolabels/{round_name}.parquet and at the rounds' validation (python -m pipeline summary)"
        ]

    @property
    def in_distribution(self) -> np.ndarray:
        return np.ones(len(self.scores), dtype=bool) if self.soft else self.scores <= self.threshold

    @property
    def weight(self) -> np.ndarray:
        """(N,) 1, or with `soft` the in-distribution p-value p (share of held-out scores >= the image's)
        over the share of held-out scores past the threshold: min(1, p / share), 1 inside the threshold and
        falling to 0 past it."""
        if not self.soft:
            return np.ones(len(self.scores))
        held = np.sort(self.held_out)
        p = (len(held) - np.searchsorted(held, self.scores, side="left")) / len(held)
        rejected_share = max((self.held_out > self.threshold).mean(), 1.0 / len(held))
        return np.minimum(1.0, p / rejected_share)


def filter_ood(
    *,
    cfg: OODConfig,
    graph: PropagationConfig,
    pool_features: np.ndarray,
    teacher: Classifier,
    encoder: Encoder,
    images: np.ndarray,
    labeled: Split,
    num_classes: int,
    batch_size: int,
    seed: int,
    compute: Compute = CPU,
) -> OODDecision:
    """Score the pool (features from `predict_pool`) by `cfg.method` against the labeled images' features in
    the same space, and calibrate the threshold on held-out labeled scores (pipeline.pseudo.ood). Method
    `none` keeps every image; `propagation` uses `graph`'s k, alpha and exact_max."""
    if cfg.method == "none":
        return OODDecision(np.zeros(len(pool_features)), np.zeros(0), float("inf"))
    if cfg.method in EMBEDDING_METHODS:
        reference = encode(encoder, images, labeled.index, compute=compute)
    else:
        _, reference = predict(teacher, images, labeled.index, batch_size, compute)
    scores, held_out = ood_scores(
        cfg.method, pool_features, reference, labeled.labels, num_classes, cfg.k, cfg.shrinkage, cfg.folds,
        seed, graph.k, graph.alpha, graph.exact_max,
    )  # fmt: skip
    separation = ood_auroc(held_out, scores)
    return OODDecision(
        scores, held_out, calibrate_ood_threshold(held_out, cfg.keep_quantile), separation,
        soft=separation < cfg.min_separation, interval=threshold_interval(held_out, cfg.keep_quantile, seed),
    )  # fmt: skip


def features_of(
    space: str,
    teacher: Classifier,
    encoder: Encoder,
    images: np.ndarray,
    index: np.ndarray,
    batch_size: int,
    compute: Compute = CPU,
) -> np.ndarray:
    """Features (N, D) of store rows `index` in `space`: ssl (the SSL embedding) or teacher (its own)."""
    if space == "ssl":
        return encode(encoder, images, index, batch_size, compute)
    return predict(teacher, images, index, batch_size, compute)[1]


def propagate_pool(
    cfg: PropagationConfig,
    probs: np.ndarray,
    pool_features: np.ndarray,
    labeled_features: np.ndarray,
    labels: np.ndarray,
) -> np.ndarray:
    """The pool's probabilities with label propagation mixed in (pipeline.pseudo.propagation):

        p_i = (1 - weight) * teacher_i + weight * Sharpen(propagated_i, T)
        Sharpen(q, T)_c = q_c^(1/T) / sum_k q_k^(1/T)

    Propagated distributions rank images better than the teacher's but are flat, and flatter for the hard
    classes: unsharpened, a confidence threshold keeps almost none of a hard class (MixMatch's Sharpen,
    Berthelot et al. 2019). weight 0: `probs` as they are."""
    if cfg.weight == 0:
        return probs
    propagated = label_propagation(
        labeled_features, labels, pool_features, probs.shape[1], cfg.k, cfg.alpha, cfg.exact_max
    ).astype(np.float64)
    sharpened = propagated ** (1 / cfg.temperature)
    sharpened /= sharpened.sum(axis=1, keepdims=True)
    return ((1 - cfg.weight) * probs + cfg.weight * sharpened).astype(probs.dtype)


def align_pool(
    probs: np.ndarray, keep: np.ndarray, alignment: str, labels: np.ndarray, num_classes: int
) -> np.ndarray:
    """Distribution alignment (`pipeline.losses.semi.align_distribution`, ReMixMatch) of the whole pool at
    once: every prediction times prior / the mean prediction over the images the OOD filter `keep`s,
    renormalised. The pool is labeled between two trainings, so the papers' running mean is the exact one. A
    class the teacher under-predicts (a class it confuses with a neighbour) is scaled up in every prediction,
    so it is not starved of pseudo-labels round after round. `alignment`: uniform, labeled (the class shares
    of `labels`) or none (the `probs` as they are)."""
    if alignment == "none" or not keep.any():
        return probs
    p = torch.from_numpy(probs).double()
    prior = class_prior(alignment, labels, num_classes).double()
    aligned = align_distribution(p, prior, p[torch.from_numpy(keep)].mean(dim=0))
    return aligned.numpy().astype(probs.dtype)


@dataclass(frozen=True)
class RoundLabels:
    table: pd.DataFrame  # one row per pool image (pipeline.pseudo.report.TABLE_COLUMNS)
    stats: dict[str, float]  # pl/* and ood/*, as logged
    ood: OODDecision

    def describe(self, round_name: str) -> str:
        """One line for the log: accepted, rejected as OOD, precision (when analysis labels exist)."""
        s = self.stats
        return (
            f"{round_name}: {s['pl/accepted']:.0f}/{len(self.table)} accepted, {s['ood/rejected']:.0f} OOD, "
            f"precision {s.get('pl/precision', float('nan')):.3f}"
        )


def label_pool(
    *,
    round_name: str,
    cfg: PseudolabelConfig,
    pool: PoolPredictions,
    teacher: Classifier,
    encoder: Encoder,
    data: Prepared,
    truth: pd.Series,
    seed: int,
    compute: Compute = CPU,
) -> RoundLabels:
    """A round's pseudo-labels from the teacher's view of the pool (`predict_pool`): the OOD filter, label
    propagation (`propagate_pool`), distribution alignment (`align_pool`), acceptance and weights by
    `cfg.mode`, the per-image table and its statistics (`truth`: the analysis labels)."""
    labeled, images = data.split("labeled"), data.images
    space = {"ssl": pool.embedding, "teacher": pool.features}
    ood = filter_ood(
        cfg=cfg.ood, graph=cfg.propagation, teacher=teacher,
        pool_features=space["ssl" if cfg.ood.method in EMBEDDING_METHODS else "teacher"],
        encoder=encoder, images=images, labeled=labeled, num_classes=len(data.classes),
        batch_size=cfg.batch_size, seed=seed, compute=compute,
    )  # fmt: skip
    probs = pool.probs
    if cfg.propagation.weight > 0:
        reference = features_of(
            cfg.propagation.features, teacher, encoder, images, labeled.index, cfg.batch_size, compute
        )
        probs = propagate_pool(
            cfg.propagation, probs, space[cfg.propagation.features], reference, labeled.labels
        )
    probs = align_pool(probs, ood.in_distribution, cfg.alignment, labeled.labels, len(data.classes))
    selection = select_pseudo_labels(
        probs, ood.in_distribution, cfg.mode, cfg.threshold, cfg.weighting, cfg.per_class
    )
    table = pseudo_label_table(
        round_name, data.split("unlabeled"), probs, selection, ood.scores, ood.weight, data.classes
    )
    stats = {**pseudo_label_stats(table, data.classes, truth), **ood.stats()}
    stats["pl/teacher_agreement"] = float((probs.argmax(axis=1) == pool.probs.argmax(axis=1)).mean())
    return RoundLabels(table, stats, ood)
