"""Self-supervised pretraining of the encoder, with collapse checks and a kNN monitor each epoch."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from pipeline.checkpoint import load_encoder, read_architecture
from pipeline.compute import Compute
from pipeline.config.pretrain import PretrainConfig, ViewPolicy
from pipeline.data.store import Prepared
from pipeline.datasets import Batched, Views, epoch_loader
from pipeline.inference import encode
from pipeline.metrics import effective_rank, knn_accuracy
from pipeline.models import Architecture, Encoder
from pipeline.runtime import LoopSetup
from pipeline.schedules import warmup_cosine
from pipeline.ssl.registry import NO_PRETRAINING, build_method, method_config
from pipeline.ssl.views import ssl_view
from pipeline.ssl.views_batch import BatchViews
from pipeline.training.loop import Resumable, on_device, run_steps, sgd

# A representation has collapsed when its L2-normalized embeddings barely vary (all images map to about the
# same point: per-dimension std far below the 1/sqrt(D) of well-spread embeddings) or lie on about one line,
# and it has fallen to under half of what it was at initialisation: an encoder at random initialisation can
# map every image to nearly one direction (small images especially), and nothing has collapsed then.
COLLAPSE_STD_RATIO = 0.05
COLLAPSE_MIN_RANK = 1.5
COLLAPSE_PATIENCE = 2  # epochs in a row
# kNN accuracy under this many times chance (1 / classes) at the end of pretraining is "at chance".
NEAR_CHANCE = 1.5


class CollapseError(RuntimeError):
    """The SSL representation collapsed; the message says which check failed and at which epoch."""


@dataclass(frozen=True)
class KnnMonitor:
    """Labeled and test images for the per-epoch kNN accuracy of the encoder features."""

    train_index: np.ndarray
    train_labels: np.ndarray
    test_index: np.ndarray
    test_labels: np.ndarray
    k: int


def knn_monitor(data: Prepared, cfg: PretrainConfig, seed: int) -> KnnMonitor:
    """The kNN monitor of pretraining: every labeled image, and `cfg.knn_test_images` test images drawn
    by `seed`."""
    labeled, test = data.split("labeled"), data.split("test")
    pick = np.random.default_rng(seed).permutation(len(test.index))[: cfg.knn_test_images]
    return KnnMonitor(labeled.index, labeled.labels, test.index[pick], test.labels[pick], cfg.knn_k)


def representation_health(features: torch.Tensor) -> dict[str, float]:
    """Per-dimension std of L2-normalized features (times sqrt(D): ~1 when well spread), effective rank."""
    z = torch.nn.functional.normalize(features, dim=1)
    std = z.std(dim=0).mean().item() * features.shape[1] ** 0.5
    return {"ssl/std_ratio": std, "ssl/effective_rank": effective_rank(features)}


def collapse_reason(health: dict[str, float], initial: dict[str, float] | None = None) -> str | None:
    """Why `health` looks collapsed, or None: the std ratio or the effective rank under its floor,
    COLLAPSE_STD_RATIO (COLLAPSE_MIN_RANK), or half the value at initialisation (`initial`) when lower."""
    std_floor, rank_floor = COLLAPSE_STD_RATIO, COLLAPSE_MIN_RANK
    if initial is not None:
        std_floor = min(std_floor, initial["ssl/std_ratio"] / 2)
        rank_floor = min(rank_floor, initial["ssl/effective_rank"] / 2)
    if health["ssl/std_ratio"] < std_floor:
        return (f"normalized-embedding std ratio {health['ssl/std_ratio']:.4f} < {std_floor:.4f} (all images "
                "map to about one point); try a lower learning rate or a higher temperature")  # fmt: skip
    if health["ssl/effective_rank"] < rank_floor:
        return (f"effective rank {health['ssl/effective_rank']:.2f} < {rank_floor:.2f} (embeddings lie on "
                "about one line)")  # fmt: skip
    return None


def check_collapse(reasons: list[str | None], epoch: int, last: bool) -> None:
    """Stop with CollapseError when the representation looked collapsed (`reasons`, one per epoch so far) in
    COLLAPSE_PATIENCE epochs in a row, or at the last epoch. Right after the warm-up the embeddings can narrow
    for an epoch and spread again (8x8 digits: std ratio 0.057 at initialisation, 0.027 after epoch 1, 0.16
    by epoch 8); a real collapse stays."""
    recent = reasons[-COLLAPSE_PATIENCE:]
    if reasons[-1] and (last or (len(recent) == COLLAPSE_PATIENCE and all(recent))):
        raise CollapseError(f"representation collapsed at epoch {epoch}: {reasons[-1]}")


def pretraining_warnings(rows: list[tuple[dict[str, float], int]], num_classes: int) -> list[str]:
    """What `pretrain`'s logged rows say went wrong short of a collapse: a kNN accuracy at the end at or near
    chance, or below the same encoder's at initialisation (the epoch-0 row). A representation that learned
    nothing about the classes fails the teacher as surely as a collapse."""
    first, last = rows[0][0], rows[-1][0]
    if "knn/accuracy" not in last:
        return []
    out, accuracy, chance = [], last["knn/accuracy"], 1 / num_classes
    if accuracy < NEAR_CHANCE * chance:
        out.append(
            f"kNN accuracy {accuracy:.1%} after pretraining is at chance ({chance:.1%} with {num_classes})"
        )
    if rows[0][1] == 0 and accuracy < first.get("knn/accuracy", 0.0):
        out.append(f"kNN accuracy fell from {first['knn/accuracy']:.1%} at initialisation to {accuracy:.1%}")
    return [w + ": the representation learned nothing about the classes; check the views (colour images "
            "need colour augmentation) and pretrain.lr" for w in out]  # fmt: skip


def pretrain_epochs(cfg: PretrainConfig, steps_per_epoch: int) -> int:
    """`cfg.epochs` whole epochs, raised to reach `min_steps` and lowered to stay within `max_steps` (at
    least one)."""
    epochs = max(math.ceil(cfg.epochs), math.ceil(cfg.min_steps / steps_per_epoch))
    return max(1, min(epochs, cfg.max_steps // steps_per_epoch))


def warm_start(
    encoder: Encoder, arch: Architecture, cfg: PretrainConfig, previous: Path
) -> tuple[PretrainConfig, str]:
    """With `cfg.warm_start`, continue from the encoder a previous run left at `previous` (dvc.yaml persists
    it) when it has the same architecture: its weights go into `encoder`, which keeps its own normalization
    (this run's channel statistics), and the run trains `warm_start_epochs` epochs. Otherwise, or without
    such a file, `encoder` stays as built. Returns the settings to train with and what was done, in words."""
    if not cfg.warm_start:
        return cfg, "from scratch"
    if not previous.is_file():
        return cfg, f"from scratch: pretrain.warm_start, but no previous encoder at {previous}"
    found = read_architecture(previous)
    if found != arch:
        return cfg, f"from scratch: the encoder at {previous} is another architecture ({found}, not {arch})"
    weights, _ = load_encoder(previous)
    state = weights.state_dict()
    state.update(mean=encoder.mean, std=encoder.std)
    encoder.load_state_dict(state)
    short = cfg.model_copy(update={"epochs": cfg.warm_start_epochs, "min_steps": 1})
    return short, f"warm start from {previous}: {cfg.warm_start_epochs} epoch(s)"


def pretrain(
    *,
    encoder: Encoder,
    images: np.ndarray,
    index: np.ndarray,
    cfg: PretrainConfig,
    monitor: KnnMonitor | None,
    setup: LoopSetup,
) -> list[tuple[dict[str, float], int]]:
    """Self-supervised pretraining of `encoder` with `cfg.method` on the images `index` of the store;
    returns the values logged per epoch, (values, epoch) in order (`epoch_table` makes them a table); with
    a `monitor`, epoch 0 is the encoder at initialisation.

    SGD with Nesterov momentum, lr = cfg.lr * lr_scale (of the method) * batch / 256, one warm-up epoch then
    cosine decay. Logs, per epoch, the mean loss and the method's own values, the kNN accuracy and the
    representation health (std, effective rank), and stops with CollapseError when the representation
    collapses. With a resume point, start from its saved state if it has one and write one every
    `resume.every` epochs. In one process, on `setup.compute`'s device and precision (views are made on the
    CPU, then copied); the encoder is back on the CPU when it returns.
    """
    image_size, seed, compute = setup.image_size, setup.seed, setup.compute
    if cfg.method == NO_PRETRAINING:  # the encoder as built: model.weights, or at random
        with on_device([encoder], compute):
            return [(monitor_encoder(encoder, images, monitor, compute), 0)] if monitor else []
    batch = min(cfg.batch_size, len(index))
    if batch < 2:
        raise ValueError(f"pretrain needs at least 2 images, found {len(index)}")
    steps_per_epoch = len(index) // batch
    epochs = pretrain_epochs(cfg, steps_per_epoch)
    method = build_method(cfg, encoder, images.shape[-1], steps_per_epoch)
    settings = method_config(cfg)
    with on_device([encoder, method], compute):
        trainable = [p for p in [*encoder.parameters(), *method.parameters()] if p.requires_grad]
        peak = cfg.lr * settings.lr_scale * batch / 256
        opt = sgd(trainable, peak, cfg.weight_decay)
        views, transforms, on_batch = view_data(
            images, index, settings.views, cfg.views_backend, method.n_views, image_size, seed
        )
        total = epochs * steps_per_epoch
        warmup = min(steps_per_epoch, total // 10)
        modules = {"encoder": encoder, "method": method, "optimizer": opt,
                   **{f"views_{v}": a for v, a in enumerate(on_batch)}}  # fmt: skip
        session = Resumable(setup.resume, modules, transforms, setup.log)
        session.restore()  # each epoch's loader has its own generator
        step_loss = compute.compiled(_MethodLoss(method, encoder))

        def step(i: int, batch) -> tuple:
            batch_views = [make(batch[0]) for make in on_batch] if on_batch else list(batch[0])
            with compute.autocast():
                loss, logs = step_loss(compute.to_device(batch_views), i)
            return loss.float(), logs

        epoch_logs: dict[str, list[float]] = {}  # every step's values, averaged per epoch

        def record(values: dict[str, float], _: int) -> None:
            for key, value in values.items():
                epoch_logs.setdefault(key, []).append(value)

        if monitor is not None and session.start == 0:  # epoch 0: the encoder at initialisation
            session.history(monitor_encoder(encoder, images, monitor, compute), 0)
        rows = session.history.rows
        initial = rows[0][0] if rows and rows[0][1] == 0 else None
        reasons: list[str | None] = []  # why each epoch looked collapsed, or None
        for epoch in range(session.start, epochs):
            encoder.train()
            method.train()
            epoch_logs.clear()

            last = run_steps(
                stage=f"pretrain ({cfg.method})", desc=f"{cfg.method} {epoch + 1}/{epochs}",
                batches=epoch_loader(views, batch, seed + epoch, compute.pin_memory),
                start=epoch * steps_per_epoch, end=(epoch + 1) * steps_per_epoch, optimizer=opt,
                lr=lambda i: warmup_cosine(i, total, peak, warmup_steps=warmup), step=step,
                epoch=lambda i: 1 + i // steps_per_epoch, record=record,
                after_step=lambda i, _: method.after_step(encoder, i, total),
            )  # fmt: skip
            summary = {key: float(np.mean(values)) for key, values in epoch_logs.items()}
            summary["train/lr"] = last["train/lr"]
            if monitor is not None:
                summary.update(monitor_encoder(encoder, images, monitor, compute))
                reasons.append(collapse_reason(summary, initial))
                check_collapse(reasons, epoch + 1, last=epoch + 1 == epochs)
            session.history(summary, epoch + 1)
            session.save(epoch + 1, epochs)
    return session.history.rows


def view_data(
    images: np.ndarray, index: np.ndarray, policy: ViewPolicy, backend: str, n_views: int, image_size: int,
    seed: int,
) -> tuple[torch.utils.data.Dataset, list, list[BatchViews]]:  # fmt: skip
    """pretrain's dataset, the albumentations transforms inside it and the view makers of whole batches, for
    `backend`: "tensor" reads batches as they are and makes each view of a whole batch in the loop;
    "albumentations" makes the views image by image in the loader. View v is drawn from seed + v."""
    if backend == "tensor":
        return Batched(images, index), [], [BatchViews(policy, seed + v) for v in range(n_views)]
    transforms = [ssl_view(policy, image_size, seed + v, images.shape[-1]) for v in range(n_views)]
    return Views(images, index, transforms), transforms, []


def epoch_table(rows: list[tuple[dict[str, float], int]]) -> pd.DataFrame:
    """One row per epoch, the metric names with '_' for '/' (columns of plots/pretrain.csv)."""
    return pd.DataFrame(
        [{"epoch": epoch, **{k.replace("/", "_"): v for k, v in m.items()}} for m, epoch in rows]
    )


def monitor_encoder(encoder: Encoder, images: np.ndarray, monitor: KnnMonitor, compute: Compute) -> dict:
    """The representation health of the monitor's images and the kNN accuracy of its test images."""
    train_f = torch.from_numpy(encode(encoder, images, monitor.train_index, compute=compute))
    test_f = torch.from_numpy(encode(encoder, images, monitor.test_index, compute=compute))
    out = representation_health(torch.cat([train_f, test_f]))
    if len(monitor.test_index):
        out["knn/accuracy"] = knn_accuracy(
            train_f, torch.as_tensor(monitor.train_labels), test_f, torch.as_tensor(monitor.test_labels),
            k=monitor.k,
        )  # fmt: skip
    return out


class _MethodLoss(torch.nn.Module):
    """The method's loss on the encoder as one module's forward, what torch.compile takes."""

    def __init__(self, method: torch.nn.Module, encoder: Encoder):
        super().__init__()
        self.method, self.encoder = method, encoder

    def forward(self, views: list[torch.Tensor], step: int) -> tuple[torch.Tensor, dict[str, float]]:
        return self.method.loss(self.encoder, views, step)
