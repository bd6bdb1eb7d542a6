"""Which round's model the pipeline hands out: the best on the validation images, never a worse one; and the
checks that keep a useless model from being handed out without a word."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.config.common import ValidationConfig
from pipeline.data.store import Split
from pipeline.data.validation import stratified_folds
from pipeline.metrics import clearly_better


@dataclass(frozen=True)
class Promotion:
    round: str  # the promoted round
    validated: bool  # chosen on validation images (False: no validation set, the last round)
    note: str  # one line for the summary and the MLflow run


def promotion_note(val_accuracy: dict[str, float], order: list[str], chosen: str) -> str:
    """What the summary and the MLflow run say about a validated promotion: the promoted round, the later
    rounds that scored lower, and the earlier ones that scored higher but within the noise."""
    note = f"{chosen} promoted (validation {val_accuracy[chosen]:.2%})"
    worse = [name for name in order[order.index(chosen) + 1 :] if val_accuracy[name] < val_accuracy[chosen]]
    if worse:
        scores = ", ".join(f"{name} {val_accuracy[name]:.2%}" for name in worse)
        note += f"; {', '.join(worse)} {'was' if len(worse) == 1 else 'were'} worse on validation ({scores})"
    higher = [name for name in order[: order.index(chosen)] if val_accuracy[name] > val_accuracy[chosen]]
    if higher:
        scores = ", ".join(f"{name} {val_accuracy[name]:.2%}" for name in higher)
        note += f"; higher on validation but within its noise (one-sided paired test, 5 %): {scores}"
    return note


def promote(val_hits: dict[str, np.ndarray] | None, order: list[str], why_unvalidated: str = "") -> Promotion:
    """The last round, unless the round with the best validation accuracy (ties: the later, which trained on
    more) is `clearly_better` than it on the same validation images (`val_hits`: per round, 1 per image it
    got right): a few dozen images cannot rank rounds a point apart, and later rounds are better on average
    (docs/pseudo_label_benchmark.md), so only a clear loss on validation keeps an earlier round. Without
    validation (`val_hits` None) the last round, saying so with `why_unvalidated`."""
    last = order[-1]
    if val_hits is None:
        return Promotion(last, False, f"{last} promoted as the last round, not validated: {why_unvalidated}")
    accuracy = {name: float(np.mean(val_hits[name])) for name in order}
    best = max(order, key=lambda name: (accuracy[name], order.index(name)))
    chosen = best if best != last and clearly_better(val_hits[best], val_hits[last]) else last
    return Promotion(chosen, True, promotion_note(accuracy, order, chosen))


def pixel_logistic_accuracy(
    train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray, num_classes: int,
    l2: float = 1e-2, steps: int = 100,
) -> float:  # fmt: skip
    """A trivial baseline: multinomial logistic regression on raw pixels (uint8 images, flattened and
    standardised by the training images' per-pixel mean and std), L2-regularised, fit by L-BFGS on
    `train_*`, accuracy on `val_*`. A model below this has learned less than the pixels give away."""
    x = torch.from_numpy(train_x.reshape(len(train_x), -1)).double()
    v = torch.from_numpy(val_x.reshape(len(val_x), -1)).double()
    mean, std = x.mean(dim=0), x.std(dim=0).clamp_min(1.0)
    x, v = (x - mean) / std, (v - mean) / std
    y = torch.as_tensor(train_y, dtype=torch.long)
    w = torch.zeros(x.shape[1], num_classes, dtype=torch.double, requires_grad=True)
    b = torch.zeros(num_classes, dtype=torch.double, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(x @ w + b, y) + l2 * (w**2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        pred = (v @ w + b).argmax(dim=1).numpy()
    return float((pred == val_y).mean())


def cross_fitted_pixel_accuracy(
    images: np.ndarray, labeled: Split, folds: int, seed: int, num_classes: int
) -> float:  # fmt: skip
    """`pixel_logistic_accuracy` without validation images: fitted on all folds but one of the labeled
    images and scored on that one, for each of the teacher's cross-fitting folds (same `folds`, `seed`)."""
    fold, correct = stratified_folds(labeled.labels, folds, seed), 0.0
    for f in range(folds):
        train, held = fold != f, fold == f
        accuracy = pixel_logistic_accuracy(
            images[labeled.index[train]], labeled.labels[train], images[labeled.index[held]],
            labeled.labels[held], num_classes,
        )  # fmt: skip
        correct += accuracy * held.sum()
    return correct / len(fold)


def usefulness_warnings(
    name: str, accuracy: float, baseline: float, num_classes: int, measured_on: str = "the validation images"
) -> list[str]:
    """Loud warnings when model `name` is at chance or below the pixel baseline, both `measured_on` the same
    held-out images, with the likely causes."""
    warnings, chance = [], 1.0 / num_classes
    if accuracy < 1.5 * chance:
        warnings.append(
            f"{name} is at chance on {measured_on} ({accuracy:.1%}, chance {chance:.1%}): "
            "the SSL encoder likely learned a shortcut (colour images: check the views' colour jitter and "
            "grayscale) or pretraining collapsed; see pretrain's kNN accuracy"
        )
    if accuracy < baseline:
        warnings.append(
            f"{name} ({accuracy:.1%} on {measured_on}) is below logistic regression on raw pixels "
            f"({baseline:.1%}) trained on the same labeled images: the pipeline's model is not worth "
            "using as it is; try another pretrain.method, more pretraining or teacher fine-tuning"
        )
    return warnings


def choose_round(
    results: dict[str, dict[str, float]], order: list[str], images: np.ndarray, train: Split,
    validation: Split | None, cfg: ValidationConfig, num_classes: int, teacher: dict | None = None,
    seed: int = 0, val_hits: dict[str, np.ndarray] | None = None,
) -> tuple[Promotion, dict[str, float], list[str]]:  # fmt: skip
    """The promoted round (`promote`, on each round's `val_hits`, required with a `validation` split),
    marked in evaluate's `results` ({round: metrics}) as `promoted` 1 / 0; the metrics to log (the pixel
    baseline) and the warnings about the promoted model. Without validation images nothing held out scores
    the rounds, but a `teacher` chosen by cross-fitting (its checkpoint's `selection`, with `seed` the
    run's) has a held-out accuracy: it is checked against the pixel baseline cross-fitted on the same
    folds, as the rounds start from it."""
    if validation is None:
        why = (f"fewer than validation.per_class + validation.min_train_per_class = "
               f"{cfg.per_class + cfg.min_train_per_class} labeled images in some class")  # fmt: skip
        promotion, logged, warnings = promote(None, order, why), {}, []
        if teacher is not None and teacher["by"] == "cross-fitting":
            held_out = teacher["scores"][teacher["mode"]]
            baseline = cross_fitted_pixel_accuracy(images, train, teacher["folds"], seed, num_classes)
            logged = {"cv/teacher_accuracy": held_out, "cv/pixel_logistic_accuracy": baseline}
            where = f"held-out labeled images ({teacher['folds']}-fold cross-fitting)"
            name = f"the teacher r0 ({teacher['mode']}, which every round starts from)"
            warnings = usefulness_warnings(name, held_out, baseline, num_classes, where)
    else:
        promotion = promote(val_hits, order)
        baseline = pixel_logistic_accuracy(
            images[train.index], train.labels, images[validation.index], validation.labels, num_classes
        )
        logged = {"val/pixel_logistic_accuracy": baseline}
        val = results[promotion.round]["val/accuracy"]
        warnings = usefulness_warnings(promotion.round, val, baseline, num_classes)
    for name in order:
        results[name]["promoted"] = float(name == promotion.round)
    return promotion, logged, warnings
