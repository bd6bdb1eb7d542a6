"""Training loops for the teacher and the noisy students, inference, and the determinism switches."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from pipeline import augment
from pipeline.augment_batch import BatchStrong
from pipeline.compute import CPU, Compute
from pipeline.config import StrongAugment, StudentConfig, TeacherConfig
from pipeline.data.store import Split
from pipeline.datasets import Batched, Views, endless_loader, image_batches
from pipeline.distributed import SINGLE, World, wrap
from pipeline.losses.semi import entropy_minimization, weighted_soft_cross_entropy
from pipeline.models import Classifier
from pipeline.pseudo.select import softmax
from pipeline.resume import History, ResumePoint, set_augmentation_state
from pipeline.schedules import linear_ramp, warmup_cosine

LogFn = Callable[[dict[str, float], int], None]


def seed_everything(seed: int) -> None:
    """Seed every generator and require deterministic kernels, so two runs on CPU give the same numbers."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)


DIVERGED = 1e6  # a loss above this has diverged: every loss of the pipeline starts below about 1e3


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or infinite or exceeded DIVERGED; the stage stops without writing its outputs."""


def check_finite(loss: torch.Tensor, stage: str, epoch: int, step: int) -> None:
    """Stop with a message naming the stage, epoch and step when the loss is NaN, infinite or diverged.
    The stage's last resume point is left as it was."""
    value = loss.item()
    if not math.isfinite(value) or abs(value) > DIVERGED:
        state = "diverged to" if math.isfinite(value) else "is"
        raise TrainingDiverged(
            f"{stage}: loss {state} {value:.4g} at epoch {epoch}, step {step}; stopped without writing "
            "the stage's outputs (its last resume point is kept). Try a lower learning rate."
        )


@dataclass(frozen=True)
class PseudoLabeled:
    """Unlabeled images that passed the OOD filter, with their targets (weight 0 where not accepted)."""

    index: np.ndarray  # (M,) store rows
    targets: np.ndarray  # (M, C) soft or one-hot pseudo-labels
    weights: np.ndarray  # (M,) confidence weights, 0 for rejected-as-unconfident


class _Indexed(torch.utils.data.Dataset):
    """Views plus per-item arrays, so the loop gets (view, label / target / weight) in one batch."""

    def __init__(self, views: Views, **arrays: np.ndarray):
        self.views, self.arrays = views, arrays

    def __len__(self) -> int:
        return len(self.views)

    @property
    def transforms(self) -> list:
        return self.views.transforms

    def __getitem__(self, i: int):
        (view,), _ = self.views[i]
        return view, {k: torch.as_tensor(v[i]) for k, v in self.arrays.items()}


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


def _sgd(model: Classifier, lr: float, weight_decay: float, encoder_lr_scale: float) -> torch.optim.SGD:
    groups = [{"params": list(model.head.parameters()), "lr_scale": 1.0}]
    if encoder_lr_scale > 0:
        groups.append({"params": list(model.encoder.parameters()), "lr_scale": encoder_lr_scale})
    return torch.optim.SGD(groups, lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)


def _set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for group in opt.param_groups:
        group["lr"] = lr * group["lr_scale"]


def encoder_frozen(cfg: TeacherConfig, labels: np.ndarray, num_classes: int) -> bool:
    """Whether the teacher trains a linear head on the frozen SSL encoder rather than fine-tuning it:
    when `encoder_lr_scale` is 0, or when there are fewer than `freeze_encoder_below` labels per class
    (labels / classes). Few labels overfit a fine-tuned encoder (docs/pseudo_label_benchmark.md)."""
    return cfg.encoder_lr_scale == 0 or len(labels) / num_classes < cfg.freeze_encoder_below


def fit_teacher(
    model: Classifier,
    images: np.ndarray,
    labeled: Split,
    cfg: TeacherConfig,
    image_size: int,
    seed: int,
    log: LogFn,
    resume: ResumePoint | None = None,
    log_every: int = 25,
    world: World = SINGLE,
    compute: Compute = CPU,
) -> dict[str, float]:
    """Train encoder + linear head on the labeled images with weak augmentation (cross-entropy); the
    encoder is fine-tuned or, with few labels per class, frozen (`encoder_frozen`).
    With `resume`, start from its saved state if it has one and write one every `resume.every` steps.
    Under torchrun (`world`), each process trains on its slice of every batch (pipeline.distributed).
    On `compute`'s device and precision; the model is back on the CPU when it returns."""
    frozen = encoder_frozen(cfg, labeled.labels, model.arch.num_classes)
    model.to(compute.device)
    model.encoder.requires_grad_(not frozen)
    opt = _sgd(model, cfg.lr, cfg.weight_decay, 0.0 if frozen else cfg.encoder_lr_scale)
    weak = augment.weak(image_size, world.seed(seed))
    data = _Indexed(Views(images, labeled.index, [weak]), label=labeled.labels)
    saved = resume.load() if resume else None
    start = saved["step"] if saved else 0
    loader = endless_loader(
        data, cfg.batch_size, cfg.steps * cfg.batch_size, seed, start, world, key="teacher.batch_size",
        pin_memory=compute.pin_memory,
    )  # fmt: skip
    batches = iter(loader)
    modules = {"model": model, "optimizer": opt}
    if saved:
        resume.restore(saved, modules, [weak])
    history = History(log, saved["history"] if saved else None)
    model.train()
    if frozen:
        model.encoder.eval()  # a frozen encoder keeps its BatchNorm statistics too
    net = compute.compiled(wrap(model, world, seed))
    last: dict[str, float] = {}
    progress = tqdm(batches, total=cfg.steps, initial=start, desc="teacher", unit="step", mininterval=1.0)
    for step, (x, arrays) in enumerate(progress, start=start):
        x, arrays = compute.to_device((x, arrays))
        _set_lr(opt, warmup_cosine(step, cfg.steps, cfg.lr, warmup_steps=cfg.steps // 20))
        with compute.autocast():
            logits = net(x)
        loss = F.cross_entropy(logits.float(), arrays["label"])
        check_finite(loss, "teacher", 1 + step * cfg.batch_size // len(data), step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % log_every == 0 or step == cfg.steps - 1:
            last = {"train/loss": loss.item(), "train/lr": opt.param_groups[0]["lr"]}
            history(last, step)
        if resume and resume.due(step + 1, cfg.steps):
            resume.save_state(step + 1, modules, [weak], history)
    model.encoder.requires_grad_(True)
    model.cpu()
    return last


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
    each whole in the loop (no transforms); "albumentations" augments image by image in the loader."""
    targets = {"target": pseudo.targets.astype(np.float32), "weight": pseudo.weights.astype(np.float32)}
    if strong.backend == "tensor":
        on_batch = [BatchStrong(strong, image_size, seed), BatchStrong(strong, image_size, seed + 1)]
        lab = Batched(images, labeled.index, label=labeled.labels)
        return lab, Batched(images, pseudo.index, **targets), [], on_batch
    transforms = [augment.strong(strong, image_size, seed), augment.strong(strong, image_size, seed + 1)]
    lab = _Indexed(Views(images, labeled.index, transforms[:1]), label=labeled.labels)
    return lab, _Indexed(Views(images, pseudo.index, transforms[1:]), **targets), transforms, []


def fit_student(
    model: Classifier,
    images: np.ndarray,
    labeled: Split,
    pseudo: PseudoLabeled,
    cfg: StudentConfig,
    image_size: int,
    seed: int,
    log: LogFn,
    resume: ResumePoint | None = None,
    log_every: int = 25,
    world: World = SINGLE,
    compute: Compute = CPU,
) -> dict[str, float]:
    """Noisy-student training on labeled + pseudo-labeled images, both strongly augmented, in one batch:

        loss = CE(labeled) + unlabeled_weight * weighted_soft_CE(pseudo) + lambda(step) * H(unlabeled)

    Noise: strong augmentation here, dropout and stochastic depth inside the model (train mode).
    With `resume`, start from its saved state if it has one and write one every `resume.every` steps.
    Under torchrun (`world`), each process trains on its slice of every batch (pipeline.distributed).
    On `compute`'s device and precision (batches are augmented on the CPU, then copied); the model is back
    on the CPU when it returns.
    """
    if len(pseudo.index) == 0:
        raise ValueError("student: no unlabeled image passed the OOD filter; nothing to train on")
    model.to(compute.device)
    opt = _sgd(model, cfg.lr, cfg.weight_decay, 1.0)
    aug_seed = world.seed(seed)
    lab, unl, transforms, on_batch = student_data(images, labeled, pseudo, cfg.strong, image_size, aug_seed)
    saved = resume.load() if resume else None
    start = saved["step"] if saved else 0
    if saved:  # before a loader's worker process starts with a copy of the generators
        set_augmentation_state(saved["rng"]["albumentations"], transforms)
    loader_args = {
        "world": world, "workers": cfg.loader_workers, "with_state": True, "pin_memory": compute.pin_memory,
    }  # fmt: skip
    lab_loader = endless_loader(
        lab, cfg.batch_labeled, cfg.steps * cfg.batch_labeled, seed, start, key="student.batch_labeled",
        **loader_args,
    )  # fmt: skip
    unl_loader = endless_loader(
        unl, cfg.batch_unlabeled, cfg.steps * cfg.batch_unlabeled, seed + 1, start,
        key="student.batch_unlabeled", **loader_args,
    )  # fmt: skip
    batches = zip(lab_loader, unl_loader, strict=True)  # creates both iterators (and workers), in this order
    modules = {"model": model, "optimizer": opt}
    modules.update({f"augment_{i}": aug for i, aug in enumerate(on_batch)})
    if saved:
        resume.restore(saved, modules, transforms)
    history = History(log, saved["history"] if saved else None)
    ramp = round(cfg.entropy_warmup * cfg.steps)
    model.train()
    # find_unused: a block that stochastic depth dropped in a step gets no gradient in it
    net = compute.compiled(wrap(model, world, seed, find_unused=cfg.stochastic_depth > 0))
    last: dict[str, float] = {}
    waiting = WaitClock(batches)
    progress = tqdm(waiting, total=cfg.steps, initial=start, desc="student", unit="step", mininterval=1.0)
    for step, (((xl, al), lab_state), ((xu, au), unl_state)) in enumerate(progress, start=start):
        _set_lr(opt, warmup_cosine(step, cfg.steps, cfg.lr, warmup_steps=cfg.steps // 20))
        if on_batch:
            with waiting.counted():
                xl, xu = on_batch[0](xl), on_batch[1](xu)
        xl, al, xu, au = compute.to_device((xl, al, xu, au))
        with compute.autocast():
            logits = net(torch.cat([xl, xu])).float()
        logits_l, logits_u = logits[: len(xl)], logits[len(xl) :]
        loss_l = F.cross_entropy(logits_l, al["label"])
        loss_u = weighted_soft_cross_entropy(logits_u, au["target"], au["weight"])
        lam = linear_ramp(step, ramp, cfg.entropy_weight)
        loss_ent = entropy_minimization(logits_u, torch.ones(len(xu)))
        loss = loss_l + cfg.unlabeled_weight * loss_u + lam * loss_ent
        check_finite(loss, "student", 1 + step * cfg.batch_labeled // len(lab), step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % log_every == 0 or step == cfg.steps - 1:
            last = {
                "train/loss": loss.item(),
                "train/loss_l": loss_l.item(),
                "train/loss_u": loss_u.item(),
                "train/entropy": loss_ent.item(),
                "train/entropy_weight": lam,
                "train/lr": opt.param_groups[0]["lr"],
                "pl/batch_mask_rate": float((au["weight"] > 0).float().mean()),
                "time/data_wait_share": waiting.share(),
            }
            history(last, step)
        if resume and resume.due(step + 1, cfg.steps):  # the generators as they were after this batch
            resume.save_state(step + 1, modules, transforms, history, lab_state + unl_state)
    model.cpu()
    return last


@torch.no_grad()
def predict(
    model: Classifier, images: np.ndarray, index: np.ndarray, batch_size: int = 512, compute: Compute = CPU
) -> tuple[np.ndarray, np.ndarray]:
    """Logits (N, C) and encoder features (N, D) of store rows `index`, in eval mode, without augmentation,
    float32 on the CPU whatever `compute` ran them on.

    The outputs are allocated once and filled batch by batch: a list of per-batch outputs, kept between the
    batches' large freed activations, fragments the heap until the process holds gigabytes it does not use
    (2.8 instead of 1.3 GB for 100,000 images, docs/scale.md)."""
    model.eval().to(compute.device)
    logits = np.empty((len(index), model.arch.num_classes), np.float32)
    features = np.empty((len(index), model.encoder.feature_dim), np.float32)
    start = 0
    for x in image_batches(images, index, batch_size, compute.pin_memory):
        with compute.autocast():
            h = model.encoder(compute.to_device(x))
            out = model.head(model.dropout(h))
        logits[start : start + len(x)] = out.float().cpu().numpy()
        features[start : start + len(x)] = h.float().cpu().numpy()
        start += len(x)
    model.cpu()
    return logits, features


@torch.no_grad()
def augmented_logits(
    model: Classifier,
    images: np.ndarray,
    index: np.ndarray,
    transform: augment.A.Compose,
    batch_size: int = 512,
    compute: Compute = CPU,
) -> np.ndarray:
    """Logits (N, C) of store rows `index`, each image under one draw of `transform`, in order (eval mode)."""
    model.eval().to(compute.device)
    loader = torch.utils.data.DataLoader(
        Views(images, index, [transform]), batch_size=batch_size, num_workers=0, pin_memory=compute.pin_memory
    )
    out, start = np.empty((len(index), model.arch.num_classes), np.float32), 0  # one block: see predict
    for views, _ in loader:
        with compute.autocast():
            out[start : start + len(views[0])] = model(compute.to_device(views[0])).float().cpu().numpy()
        start += len(views[0])
    model.cpu()
    return out


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
