"""The noisy student of a round: labeled and pseudo-labeled images, strongly augmented, in one batch."""

from __future__ import annotations

import copy
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from pipeline import augment
from pipeline.augment_batch import BatchStrong
from pipeline.augment_weak import BatchWeak
from pipeline.checkpoint import load_classifier, load_encoder, read_architecture
from pipeline.config.student import StrongAugment, StudentConfig
from pipeline.data.store import Split
from pipeline.datasets import Batched, Views, ViewsWithArrays, endless_loader
from pipeline.distributed import wrap
from pipeline.losses.semi import (
    class_prior,
    consistency_loss,
    entropy_minimization,
    weighted_soft_cross_entropy,
)
from pipeline.models import Classifier, build_classifier
from pipeline.pseudo.online import OnlineTargets
from pipeline.pseudo.targets import PseudoLabeled
from pipeline.resume import set_augmentation_state
from pipeline.runtime import LoopSetup
from pipeline.schedules import linear_ramp, warmup_cosine
from pipeline.training.loop import Resumable, on_device, run_steps, sgd


def build_student(
    *, cfg: StudentConfig, num_classes: int, stats: dict, encoder_file: Path, previous_file: Path
) -> Classifier:
    """The student of `cfg`'s architecture (its noise: dropout, stochastic depth), initialised by `cfg.init`:
    from the round's teacher (`previous`), from the SSL encoder with a new head (`ssl`), or at random
    (`scratch`). Its backbone is `cfg.backbone` (None: the encoder's), with the encoder's channels, stem."""
    base = read_architecture(encoder_file)
    arch = replace(
        base, backbone=cfg.backbone or base.backbone, width=cfg.width, depth=cfg.depth,
        num_classes=num_classes, dropout=cfg.dropout, stochastic_depth=cfg.stochastic_depth,
    )  # fmt: skip
    model = build_classifier(arch, stats["mean"], stats["std"])
    if cfg.init == "ssl":
        encoder, _ = load_encoder(encoder_file)
        model.encoder.load_state_dict(encoder.state_dict())
    elif cfg.init == "previous":
        previous, _ = load_classifier(previous_file)
        model.load_state_dict(previous.state_dict())
    return model


class WaitClock:
    """Iterates `batches`, timing how long each `next` blocks, plus the time spent in `counted()` blocks
    (augmentation of whole batches in the loop): the share of the loop spent on data rather than the model."""

    def __init__(self, batches):
        self.batches, self.waited, self.started = iter(batches), 0.0, time.perf_counter()

    def __iter__(self):
        return self

    def __next__(self):
        start = time.perf_counter()
        try:
            return next(self.batches)
        finally:
            self.waited += time.perf_counter() - start

    @contextmanager
    def counted(self):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.waited += time.perf_counter() - start

    def share(self) -> float:
        return self.waited / max(time.perf_counter() - self.started, 1e-9)


def student_data(
    images: np.ndarray,
    labeled: Split,
    pseudo: PseudoLabeled,
    strong: StrongAugment,
    image_size: int,
    seed: int,
) -> tuple[torch.utils.data.Dataset, torch.utils.data.Dataset, list, list[BatchStrong]]:
    """fit_student's labeled and pseudo-labeled datasets, the albumentations transforms inside them and
    the augmenters of whole batches, for `strong.backend`: "tensor" reads batches as they are and augments
    each whole in the loop (no transforms; strong for labeled, strong and weak for unlabeled images);
    "albumentations" augments image by image in the loader."""
    targets = {"target": pseudo.targets.astype(np.float32), "weight": pseudo.weights.astype(np.float32),
               "ood_weight": np.ones(len(pseudo.index), np.float32) if pseudo.ood_weights is None
               else pseudo.ood_weights.astype(np.float32)}  # fmt: skip
    if strong.backend == "tensor":
        on_batch = [BatchStrong(strong, image_size, seed), BatchStrong(strong, image_size, seed + 1),
                    BatchWeak(image_size, seed + 2)]  # fmt: skip
        lab = Batched(images, labeled.index, label=labeled.labels)
        return lab, Batched(images, pseudo.index, **targets), [], on_batch
    ops = (strong.num_ops, strong.magnitude, strong.cutout, image_size)
    transforms = [augment.strong(*ops, seed), augment.strong(*ops, seed + 1)]
    lab = ViewsWithArrays(Views(images, labeled.index, transforms[:1]), label=labeled.labels)
    return lab, ViewsWithArrays(Views(images, pseudo.index, transforms[1:]), **targets), transforms, []


def student_loss(
    logits_l: torch.Tensor, labels: torch.Tensor, logits_u: torch.Tensor, loss_u: torch.Tensor,
    unlabeled_weight: float, entropy_weight: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:  # fmt: skip
    """loss = CE(labeled) + unlabeled_weight * loss_u + entropy_weight * H(unlabeled), every tensor on the
    logits' device, with loss_u the pseudo-label term (offline: `weighted_soft_cross_entropy` against the
    round's table; online: `consistency_loss` against the weak view). Returns the loss and its terms."""
    loss_l = F.cross_entropy(logits_l, labels)
    loss_ent = entropy_minimization(logits_u, torch.ones(len(logits_u), device=logits_u.device))
    loss = loss_l + unlabeled_weight * loss_u + entropy_weight * loss_ent
    return loss, {"train/loss_l": loss_l, "train/loss_u": loss_u, "train/entropy": loss_ent}


def weak_view_targets(
    net: torch.nn.Module, model: Classifier, xw: torch.Tensor, online: OnlineTargets, compute
) -> tuple[torch.Tensor, torch.Tensor]:
    """The online targets of a batch: the softmax of `net` (the student, or its EMA teacher) on the weak
    views `xw`, un-noised (`model` in eval mode: no dropout, no stochastic depth, BatchNorm's running
    statistics) and without gradient, through `online` (alignment, then mask or weight)."""
    training = model.training
    model.eval()
    try:
        with torch.no_grad(), compute.autocast():
            probs = F.softmax(net(xw).float(), dim=1)
    finally:
        model.train(training)
    return online(probs)


@torch.no_grad()
def update_ema(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """Mean Teacher's weights (Tarvainen & Valpola 2017), BatchNorm's running statistics copied:

    theta'_t = decay * theta'_(t-1) + (1 - decay) * theta_t
    """
    for mean, param in zip(ema.parameters(), model.parameters(), strict=True):
        mean.lerp_(param.detach(), 1.0 - decay)
    for mean, buffer in zip(ema.buffers(), model.buffers(), strict=True):
        mean.copy_(buffer)


def fit_student(
    *,
    model: Classifier,
    images: np.ndarray,
    labeled: Split,
    pseudo: PseudoLabeled,
    cfg: StudentConfig,
    setup: LoopSetup,
) -> dict[str, float]:
    """Noisy-student training on labeled + pseudo-labeled images, both strongly augmented, in one batch
    (`student_loss`, the entropy weight ramped up over `entropy_warmup` of the steps).

    The pseudo-label term, by `cfg.consistency`:
    - offline: the round's table (the previous round's predictions) is the fixed target, with its weight;
    - online: each step the model itself, un-noised (eval mode: no dropout, no stochastic depth, BatchNorm's
      running statistics) and without gradient, predicts a weak view of each unlabeled image; that
      prediction, aligned and masked by `OnlineTargets` (FreeMatch / SoftMatch / FixMatch), is the hard
      target of the strong view (`consistency_loss`). The table still chooses the images (its OOD filter)
      and `pl/online_agreement` logs how often the online label equals the table's.

    Noise: strong augmentation here, dropout and stochastic depth inside the model (train mode).
    With a resume point, start from its saved state if it has one and write one every `resume.every` steps.
    Under torchrun (`setup.world`), each process trains on its slice of every batch (pipeline.distributed).
    On `setup.compute`'s device and precision (batches are augmented on the CPU, then copied); the model is
    back on the CPU when it returns.
    """
    image_size, seed, world, compute = setup.image_size, setup.seed, setup.world, setup.compute
    if len(pseudo.index) == 0:
        raise ValueError("student: no unlabeled image passed the OOD filter; nothing to train on")
    steps = cfg.total_steps(len(pseudo.index), cfg.batch_unlabeled)
    with on_device([model], compute):
        groups = [{"params": list(m.parameters()), "lr_scale": 1.0} for m in (model.head, model.encoder)]
        opt = sgd(groups, cfg.lr, cfg.weight_decay)
        aug_seed = world.seed(seed)
        lab, unl, transforms, on_batch = student_data(
            images, labeled, pseudo, cfg.strong, image_size, aug_seed
        )
        online, ema = None, None
        if cfg.consistency == "online":
            prior = class_prior(cfg.online.alignment, labeled.labels, model.arch.num_classes)
            online = {"online_targets": OnlineTargets(cfg.online, prior)}
            if cfg.online.teacher_ema > 0:  # the targets' model: an EMA of the student's weights
                ema = copy.deepcopy(model).eval().requires_grad_(False)
                online["ema_teacher"] = ema
        modules = {"model": model, "optimizer": opt, **{f"augment_{i}": a for i, a in enumerate(on_batch)},
                   **(online or {})}  # fmt: skip
        session = Resumable(setup.resume, modules, transforms, setup.log)
        if session.saved:  # before a loader's worker process starts with a copy of the generators
            set_augmentation_state(session.saved["rng"]["albumentations"], transforms)
        loader_args = {
            "world": world, "workers": cfg.loader_workers, "with_state": True,
            "pin_memory": compute.pin_memory,
        }  # fmt: skip
        lab_loader = endless_loader(
            lab, cfg.batch_labeled, steps * cfg.batch_labeled, seed, session.start,
            key="student.batch_labeled", **loader_args,
        )  # fmt: skip
        unl_loader = endless_loader(
            unl, cfg.batch_unlabeled, steps * cfg.batch_unlabeled, seed + 1, session.start,
            key="student.batch_unlabeled", **loader_args,
        )  # fmt: skip
        batches = zip(lab_loader, unl_loader, strict=True)  # creates both iterators (and workers), in order
        session.restore()
        ramp = round(cfg.entropy_warmup * steps)
        model.train()
        # find_unused: a block that stochastic depth dropped in a step gets no gradient in it
        net = compute.compiled(wrap(model, world, seed, find_unused=cfg.stochastic_depth > 0))
        waiting = WaitClock(batches)

        def step(i: int, batch) -> tuple:
            ((xl, al), _), ((xu, au), _) = batch
            xw = None  # the weak views: online consistency only (whole batches, the tensor backend)
            if on_batch:
                with waiting.counted():
                    if online:
                        xw = on_batch[2](xu)
                    xl, xu = on_batch[0](xl), on_batch[1](xu)
            xl, al, xu, au, xw = compute.to_device((xl, al, xu, au, xw))
            logs = {}
            if online:
                teacher = (ema, ema) if ema is not None else (net, model)
                probs_w, weights = weak_view_targets(*teacher, xw, online["online_targets"], compute)
                weights = weights * au["ood_weight"]
                offline_label = au["target"].argmax(dim=1)
                logs["pl/online_agreement"] = (probs_w.argmax(dim=1) == offline_label).float().mean()
                logs["pl/online_threshold"] = online["online_targets"].threshold()
            else:
                weights = au["weight"]
            with compute.autocast():
                logits = net(torch.cat([xl, xu])).float()
            logits_u = logits[len(xl) :]
            if online:
                loss_u = consistency_loss(logits_u, probs_w, weights)
            else:
                loss_u = weighted_soft_cross_entropy(logits_u, au["target"], weights)
            lam = linear_ramp(i, ramp, cfg.entropy_weight)
            loss, terms = student_loss(
                logits[: len(xl)], al["label"], logits_u, loss_u, cfg.unlabeled_weight, lam
            )
            return loss, {
                **terms,
                **logs,
                "train/entropy_weight": lam,
                "pl/batch_mask_rate": (weights > 0).float().mean(),
                "time/data_wait_share": waiting.share(),
            }

        def after_step(i: int, batch) -> None:  # the generators as they were after this batch
            if ema is not None:
                update_ema(ema, model, cfg.online.teacher_ema)
            (_, lab_state), (_, unl_state) = batch
            session.save(i + 1, steps, lab_state + unl_state)

        return run_steps(
            stage="student", desc="student", batches=waiting, start=session.start, end=steps,
            optimizer=opt, lr=lambda i: warmup_cosine(i, steps, cfg.lr, warmup_steps=steps // 20),
            step=step, epoch=lambda i: 1 + i * cfg.batch_labeled // len(lab), record=session.history,
            log_every=setup.log_every, after_step=after_step,
        )  # fmt: skip
