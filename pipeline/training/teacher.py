"""The teacher (round r0): the SSL encoder and a linear head trained on the labeled images; the best of a
linear probe, a fine-tuned encoder and the same network trained from scratch, on the validation images or,
without them, by cross-fitting the labeled images."""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace

import numpy as np
import torch.nn.functional as F

from pipeline import augment
from pipeline.augment_weak import BatchWeak
from pipeline.config.teacher import TeacherConfig
from pipeline.data.store import Split
from pipeline.data.validation import stratified_folds
from pipeline.datasets import Batched, Views, ViewsWithArrays, endless_loader
from pipeline.distributed import wrap
from pipeline.inference import predict
from pipeline.metrics import accuracy, clearly_better
from pipeline.models import Classifier, Encoder
from pipeline.runtime import LoopSetup
from pipeline.schedules import warmup_cosine
from pipeline.training.loop import Resumable, on_device, run_steps, sgd


def encoder_frozen(cfg: TeacherConfig, labels: np.ndarray, num_classes: int) -> bool:
    """Whether the teacher trains a linear head on the frozen SSL encoder rather than fine-tuning it:
    when `encoder_lr_scale` is 0, or when there are fewer than `freeze_encoder_below` labels per class
    (labels / classes). Few labels overfit a fine-tuned encoder (docs/pseudo_label_benchmark.md)."""
    return cfg.encoder_lr_scale == 0 or len(labels) / num_classes < cfg.freeze_encoder_below


def fit_teacher(
    *,
    model: Classifier,
    images: np.ndarray,
    labeled: Split,
    cfg: TeacherConfig,
    setup: LoopSetup,
    frozen: bool | None = None,
    desc: str = "teacher",
) -> dict[str, float]:
    """Train encoder + linear head on the labeled images with weak augmentation (cross-entropy); the
    encoder is `frozen` (a linear probe) or fine-tuned; None: frozen with few labels per class
    (`encoder_frozen`).
    With a resume point, start from its saved state if it has one and write one every `resume.every` steps.
    Under torchrun (`setup.world`), each process trains on its slice of every batch (pipeline.distributed).
    On `setup.compute`'s device and precision; the model is back on the CPU when it returns."""
    image_size, seed, world, compute = setup.image_size, setup.seed, setup.world, setup.compute
    if frozen is None:
        frozen = encoder_frozen(cfg, labeled.labels, model.arch.num_classes)
    steps = cfg.total_steps(len(labeled.index), cfg.batch_size)
    with on_device([model], compute):
        model.encoder.requires_grad_(not frozen)
        groups = [{"params": list(model.head.parameters()), "lr_scale": 1.0}]
        if not frozen:
            groups.append({"params": list(model.encoder.parameters()), "lr_scale": cfg.encoder_lr_scale})
        opt = sgd(groups, cfg.lr, cfg.weight_decay)
        if cfg.augment_backend == "tensor":  # flip + shift of whole batches in the loop
            on_batch, transforms = BatchWeak(image_size, world.seed(seed)), []
            data = Batched(images, labeled.index, label=labeled.labels)
        else:
            on_batch, transforms = None, [augment.weak(image_size, world.seed(seed))]
            data = ViewsWithArrays(Views(images, labeled.index, transforms), label=labeled.labels)
        modules = {"model": model, "optimizer": opt, **({"augment": on_batch} if on_batch else {})}
        session = Resumable(setup.resume, modules, transforms, setup.log)
        loader = endless_loader(
            data, cfg.batch_size, steps * cfg.batch_size, seed, session.start, world,
            key="teacher.batch_size", pin_memory=compute.pin_memory,
        )  # fmt: skip
        batches = iter(loader)
        session.restore()
        model.train()
        if frozen:
            model.encoder.eval()  # a frozen encoder keeps its BatchNorm statistics too
        net = compute.compiled(wrap(model, world, seed))

        def step(i: int, batch) -> tuple:
            x, arrays = compute.to_device((on_batch(batch[0]) if on_batch else batch[0], batch[1]))
            with compute.autocast():
                logits = net(x)
            return F.cross_entropy(logits.float(), arrays["label"]), {}

        last = run_steps(
            stage="teacher", desc=desc, batches=batches, start=session.start, end=steps,
            optimizer=opt, lr=lambda i: warmup_cosine(i, steps, cfg.lr, warmup_steps=steps // 20),
            step=step, epoch=lambda i: 1 + i * cfg.batch_size // len(data), record=session.history,
            log_every=setup.log_every, after_step=lambda i, _: session.save(i + 1, steps),
        )  # fmt: skip
        model.encoder.requires_grad_(True)
    return last


def teacher_candidates(cfg: TeacherConfig) -> dict[str, TeacherConfig]:
    """The teachers `fit_teacher_by_validation` tries, each with the settings it trains with: probe (a linear
    head on the frozen SSL encoder), finetune (encoder and head from the SSL weights; not with
    encoder_lr_scale 0) and scratch (the same network from random initialisation at `scratch_lr`: the
    supervised-only model, which a teacher from pretraining has to beat)."""
    settings = {
        "probe": cfg,
        "finetune": cfg,
        "scratch": cfg.model_copy(update={"lr": cfg.scratch_lr, "encoder_lr_scale": 1.0}),
    }
    return {
        name: settings[name]
        for name in cfg.candidates
        if not (name == "finetune" and cfg.encoder_lr_scale == 0)
    }


def fit_candidate(
    mode: str, *, model: Classifier, images: np.ndarray, labeled: Split, settings: TeacherConfig,
    setup: LoopSetup, weights: dict, part: str, desc: str,
) -> None:  # fmt: skip
    """Train teacher candidate `mode` into `model` from `weights`, with its own resume point (`part`) and
    its curves logged with `part` as prefix."""
    model.load_state_dict(weights)
    candidate = replace(
        setup,
        log=lambda metrics, step: setup.log({f"{part}/{k}": v for k, v in metrics.items()}, step),
        resume=setup.resume.derived(part.replace("/", "-")) if setup.resume else None,
    )
    fit_teacher(model=model, images=images, labeled=labeled, cfg=settings, setup=candidate,
                frozen=mode == "probe", desc=desc)  # fmt: skip


def best_mode(scores: dict[str, float]) -> str:
    """The candidate with the highest score; ties: the earlier in `cfg.candidates` (the simpler model)."""
    order = list(scores)
    return max(order, key=lambda mode: (scores[mode], -order.index(mode)))


def fit_teacher_by_validation(
    *,
    model: Classifier,
    images: np.ndarray,
    labeled: Split,
    validation: Split,
    cfg: TeacherConfig,
    setup: LoopSetup,
    initial: dict | None = None,
) -> tuple[str, dict[str, float]]:
    """Train each of `teacher_candidates(cfg)` and keep in `model` the one most accurate on the `validation`
    images (ties: the earlier in `cfg.candidates`). probe and finetune start from
    `model`'s weights, scratch from `initial` (the network's random initialisation; required with it). Each
    candidate logs its curves with its name as prefix and has its own resume point. Returns the chosen mode
    and the validation accuracy of each."""
    candidates = teacher_candidates(cfg)
    if "scratch" in candidates and initial is None:
        raise ValueError("the scratch teacher candidate needs the network's initial weights")
    pretrained, scores, trained = copy.deepcopy(model.state_dict()), {}, {}
    for mode, settings in candidates.items():
        fit_candidate(
            mode, model=model, images=images, labeled=labeled, settings=settings, setup=setup, part=mode,
            weights=initial if mode == "scratch" else pretrained, desc=f"teacher {mode}",
        )  # fmt: skip
        logits, _ = predict(model, images, validation.index, compute=setup.compute)
        scores[mode] = accuracy(logits.argmax(axis=1), validation.labels)
        trained[mode] = copy.deepcopy(model.state_dict())
    chosen = best_mode(scores)
    model.load_state_dict(trained[chosen])
    return chosen, scores


def cross_fitted_choice(correct: dict[str, np.ndarray], default: str) -> str:
    """The candidate with the best held-out accuracy (`correct`: per candidate, 1 per labeled image its fold's
    model got right) if it is `clearly_better` than the `default` (the labels-per-class rule's teacher:
    a one-sided paired test of the per-image difference at the 5 % level); else the default."""
    best = best_mode({mode: float(hits.mean()) for mode, hits in correct.items()})
    if default not in correct or best == default:
        return best
    return best if clearly_better(correct[best], correct[default]) else default


def fit_teacher_by_cross_fitting(
    *,
    model: Classifier,
    images: np.ndarray,
    labeled: Split,
    folds: int,
    cfg: TeacherConfig,
    setup: LoopSetup,
    initial: dict | None = None,
) -> tuple[str, dict[str, float]]:
    """Without validation images: deal the labeled images into `folds` stratified folds; for each fold, train
    every candidate on the other folds and predict the held-out fold, so each image is scored by models that
    never saw it. `cross_fitted_choice` keeps the rule's teacher (`encoder_frozen`) unless a candidate is
    clearly better held out; the chosen one is then trained on all labeled images into `model`. Same
    starting weights as `fit_teacher_by_validation`. The fold models log their curves as
    `fold{f}/{mode}/...`. Returns the chosen mode and the held-out accuracy of each."""
    candidates = teacher_candidates(cfg)
    if "scratch" in candidates and initial is None:
        raise ValueError("the scratch teacher candidate needs the network's initial weights")
    pretrained = copy.deepcopy(model.state_dict())
    correct = {mode: np.zeros(len(labeled.index), dtype=np.int64) for mode in candidates}
    fold = stratified_folds(labeled.labels, folds, setup.seed)
    for f in range(folds):
        train, held = labeled.subset(fold != f), labeled.subset(fold == f)
        for mode, settings in candidates.items():
            fit_candidate(
                mode, model=model, images=images, labeled=train, settings=settings, setup=setup,
                weights=initial if mode == "scratch" else pretrained, part=f"fold{f}/{mode}",
                desc=f"teacher fold {f + 1}/{folds} {mode}",
            )  # fmt: skip
            logits, _ = predict(model, images, held.index, compute=setup.compute)
            correct[mode][fold == f] = logits.argmax(axis=1) == held.labels
    default = "probe" if encoder_frozen(cfg, labeled.labels, model.arch.num_classes) else "finetune"
    chosen = cross_fitted_choice(correct, default)
    fit_candidate(
        chosen, model=model, images=images, labeled=labeled, settings=candidates[chosen], setup=setup,
        weights=initial if chosen == "scratch" else pretrained, part=chosen, desc=f"teacher {chosen}",
    )  # fmt: skip
    return chosen, {mode: float(hits.mean()) for mode, hits in correct.items()}


def cross_fit_folds(cfg: TeacherConfig, labels: np.ndarray) -> int:
    """Folds for cross-fitting: `cfg.cross_fit_folds`, at most the fewest labels of a class; 0 when under 2
    (every fold must hold out an image of each class and leave one to train on)."""
    folds = min(cfg.cross_fit_folds, int(np.bincount(labels).min()) if len(labels) else 0)
    return folds if folds >= 2 else 0


@dataclass(frozen=True)
class TeacherChoice:
    """Which teacher the stage kept and how: `by` validation, cross-fitting or rule (without a validation
    set: "rule (no validation set)"); `scores`: each candidate's accuracy on the validation images or held
    out (none by rule); `folds` of cross-fitting."""

    mode: str  # probe | finetune | scratch
    by: str
    scores: dict[str, float]
    folds: int = 0

    def describe(self) -> str:
        """The `teacher_mode` tag: the mode, and how it was chosen unless on validation images."""
        return self.mode if self.by == "validation" else f"{self.mode} by {self.by}"


def train_teacher(
    *,
    model: Classifier,
    images: np.ndarray,
    labeled: Split,
    validation: Split | None,
    cfg: TeacherConfig,
    setup: LoopSetup,
    encoder: Encoder,
) -> TeacherChoice:
    """The teacher stage's training of `model`, freshly initialised (seeded), with the SSL `encoder`'s
    weights loaded into it. With `cfg.select: validation`, the best of `cfg.candidates` on the `validation`
    split (`fit_teacher_by_validation`) or, without one, by cross-fitting the labeled images
    (`fit_teacher_by_cross_fitting`); scratch starts from the fresh initialisation. Else, or with too few
    labels to cross-fit, `fit_teacher` by the labels-per-class rule. Returns which was kept and how."""
    folds = cross_fit_folds(cfg, labeled.labels) if validation is None else 0
    chosen_by = None if cfg.select == "rule" else "validation" if validation is not None else (
        "cross-fitting" if folds else None)  # fmt: skip
    scratch = chosen_by is not None and "scratch" in teacher_candidates(cfg)
    initial = copy.deepcopy(model.state_dict()) if scratch else None  # only the scratch candidate needs it
    model.encoder.load_state_dict(encoder.state_dict())
    if chosen_by is None:
        frozen = encoder_frozen(cfg, labeled.labels, model.arch.num_classes)
        fit_teacher(model=model, images=images, labeled=labeled, cfg=cfg, setup=setup, frozen=frozen)
        by = "rule" if validation is not None else "rule (no validation set)"
        return TeacherChoice("probe" if frozen else "finetune", by, {})
    common = {"model": model, "images": images, "labeled": labeled, "cfg": cfg, "setup": setup,
              "initial": initial}  # fmt: skip
    if validation is not None:
        mode, scores = fit_teacher_by_validation(validation=validation, **common)
        key = "val"
    else:
        mode, scores = fit_teacher_by_cross_fitting(folds=folds, **common)
        key = "cv"
    setup.log({f"{key}/{name}_accuracy": score for name, score in scores.items()}, 0)
    print(f"teacher: {mode} kept ({chosen_by}: " + ", ".join(f"{k} {v:.2%}" for k, v in scores.items()) + ")")
    return TeacherChoice(mode, chosen_by, scores, folds)
