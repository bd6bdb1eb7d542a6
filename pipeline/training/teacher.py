"""The teacher (round r0): the SSL encoder and a linear head trained on the labeled images; with validation
images, the best of a linear probe, a fine-tuned encoder and the same network trained from scratch."""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import torch.nn.functional as F

from pipeline import augment
from pipeline.config.teacher import TeacherConfig
from pipeline.data.store import Split
from pipeline.datasets import Views, ViewsWithArrays, endless_loader
from pipeline.distributed import wrap
from pipeline.inference import predict
from pipeline.metrics import accuracy
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
        weak = augment.weak(image_size, world.seed(seed))
        data = ViewsWithArrays(Views(images, labeled.index, [weak]), label=labeled.labels)
        session = Resumable(setup.resume, {"model": model, "optimizer": opt}, [weak], setup.log)
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
            x, arrays = compute.to_device(batch)
            with compute.autocast():
                logits = net(x)
            return F.cross_entropy(logits.float(), arrays["label"]), {}

        last = run_steps(
            stage="teacher", desc="teacher", batches=batches, start=session.start, end=steps,
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
        model.load_state_dict(initial if mode == "scratch" else pretrained)
        candidate = replace(
            setup,
            log=lambda metrics, step, mode=mode: setup.log(
                {f"{mode}/{k}": v for k, v in metrics.items()}, step
            ),
            resume=setup.resume.derived(mode) if setup.resume else None,
        )
        frozen = mode == "probe"
        fit_teacher(model=model, images=images, labeled=labeled, cfg=settings, setup=candidate, frozen=frozen)
        logits, _ = predict(model, images, validation.index, compute=setup.compute)
        scores[mode] = accuracy(logits.argmax(axis=1), validation.labels)
        trained[mode] = copy.deepcopy(model.state_dict())
    order = list(candidates)
    chosen = max(order, key=lambda mode: (scores[mode], -order.index(mode)))
    model.load_state_dict(trained[chosen])
    return chosen, scores


def train_teacher(
    *,
    model: Classifier,
    images: np.ndarray,
    labeled: Split,
    validation: Split | None,
    cfg: TeacherConfig,
    setup: LoopSetup,
    encoder: Encoder,
) -> str:
    """The teacher stage's training of `model`, freshly initialised (seeded), with the SSL `encoder`'s
    weights loaded into it: with a `validation` split and `cfg.select: validation`, the best of
    `cfg.candidates` on it (`fit_teacher_by_validation`; scratch starts from the fresh initialisation), else
    `fit_teacher` by the labels-per-class rule. Returns which was kept: probe, finetune, scratch, or how the
    rule chose."""
    by_validation = validation is not None and cfg.select == "validation"
    scratch = by_validation and "scratch" in teacher_candidates(cfg)
    initial = copy.deepcopy(model.state_dict()) if scratch else None  # only the scratch candidate needs it
    model.encoder.load_state_dict(encoder.state_dict())
    if not by_validation:
        frozen = encoder_frozen(cfg, labeled.labels, model.arch.num_classes)
        fit_teacher(model=model, images=images, labeled=labeled, cfg=cfg, setup=setup, frozen=frozen)
        return f"{'probe' if frozen else 'finetune'} by rule" + (
            " (no validation set)" if validation is None else ""
        )
    mode, scores = fit_teacher_by_validation(
        model=model, images=images, labeled=labeled, validation=validation, cfg=cfg, setup=setup,
        initial=initial,
    )  # fmt: skip
    setup.log({f"val/{name}_accuracy": score for name, score in scores.items()}, 0)
    print(f"teacher: {mode} kept (validation: " + ", ".join(f"{k} {v:.2%}" for k, v in scores.items()) + ")")
    return mode
