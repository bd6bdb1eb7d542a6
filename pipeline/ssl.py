"""Self-supervised pretraining of the encoder, with collapse checks and a kNN monitor each epoch."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from pipeline import augment
from pipeline.compute import CPU, Compute
from pipeline.config import PretrainConfig
from pipeline.datasets import Views, epoch_loader, image_batches
from pipeline.metrics import effective_rank, knn_accuracy
from pipeline.models import Encoder
from pipeline.resume import History, ResumePoint
from pipeline.schedules import warmup_cosine
from pipeline.ssl_methods import build_method
from pipeline.train import LogFn, check_finite

# A representation has collapsed when its L2-normalized embeddings barely vary (all images map to about the
# same point: per-dimension std far below the 1/sqrt(D) of well-spread embeddings) or lie on about one line.
COLLAPSE_STD_RATIO = 0.05
COLLAPSE_MIN_RANK = 1.5


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


@torch.no_grad()
def encode(
    encoder: Encoder, images: np.ndarray, index: np.ndarray, batch_size: int = 512, compute: Compute = CPU
) -> torch.Tensor:
    """Encoder features (N, D) of store rows `index` in eval mode, computed on `compute`'s device, returned
    float32 on the CPU in one block filled batch by batch (pipeline.train.predict says why); the encoder
    ends where it was."""
    where = next(encoder.parameters()).device
    encoder.eval().to(compute.device)
    out, start = torch.empty(len(index), encoder.feature_dim), 0
    for x in image_batches(images, index, batch_size, compute.pin_memory):
        with compute.autocast():
            out[start : start + len(x)] = encoder(compute.to_device(x)).float().cpu()
        start += len(x)
    encoder.to(where)
    return out


def representation_health(features: torch.Tensor) -> dict[str, float]:
    """Per-dimension std of L2-normalized features (times sqrt(D): ~1 when well spread), effective rank."""
    z = torch.nn.functional.normalize(features, dim=1)
    std = z.std(dim=0).mean().item() * features.shape[1] ** 0.5
    return {"ssl/std_ratio": std, "ssl/effective_rank": effective_rank(features)}


def check_collapse(health: dict[str, float], epoch: int) -> None:
    if health["ssl/std_ratio"] < COLLAPSE_STD_RATIO:
        raise CollapseError(
            f"representation collapsed at epoch {epoch}: normalized-embedding std ratio "
            f"{health['ssl/std_ratio']:.4f} < {COLLAPSE_STD_RATIO} (all images map to about one point); "
            "try a lower learning rate or a higher temperature"
        )
    if health["ssl/effective_rank"] < COLLAPSE_MIN_RANK:
        raise CollapseError(
            f"representation collapsed at epoch {epoch}: effective rank {health['ssl/effective_rank']:.2f} "
            f"< {COLLAPSE_MIN_RANK} (embeddings lie on about one line)"
        )


def pretrain(
    encoder: Encoder,
    images: np.ndarray,
    index: np.ndarray,
    cfg: PretrainConfig,
    image_size: int,
    seed: int,
    monitor: KnnMonitor | None,
    log: LogFn,
    resume: ResumePoint | None = None,
    compute: Compute = CPU,
) -> dict[str, float]:
    """Self-supervised pretraining of `encoder` with `cfg.method` on the images `index` of the store.

    SGD with Nesterov momentum, lr = cfg.lr * lr_scale (of the method) * batch / 256, one warm-up epoch then
    cosine decay. Logs, per epoch, the mean loss and the method's own values, the kNN accuracy and the
    representation health (std, effective rank), and stops with CollapseError when the representation
    collapses. With `resume`, start from its saved state if it has one and write one every `resume.every`
    epochs. On `compute`'s device and precision (views are made on the CPU, then copied); the encoder is
    back on the CPU when it returns.
    """
    batch = min(cfg.batch_size, len(index))
    if batch < 2:
        raise ValueError(f"pretrain needs at least 2 images, found {len(index)}")
    steps_per_epoch = len(index) // batch
    method = build_method(cfg, encoder, images.shape[-1], steps_per_epoch)
    encoder.to(compute.device)
    method.to(compute.device)
    trainable = [p for p in [*encoder.parameters(), *method.parameters()] if p.requires_grad]
    peak = cfg.lr * cfg.method_config().lr_scale * batch / 256
    opt = torch.optim.SGD(trainable, lr=peak, momentum=0.9, nesterov=True, weight_decay=cfg.weight_decay)
    policy = cfg.method_config().views
    transforms = [augment.ssl_view(policy, image_size, seed + v) for v in range(method.n_views)]
    views = Views(images, index, transforms)
    total = cfg.epochs * steps_per_epoch
    warmup = min(steps_per_epoch, total // 10)
    modules = {"encoder": encoder, "method": method, "optimizer": opt}
    saved = resume.load() if resume else None
    if saved:
        resume.restore(saved, modules, transforms)  # each epoch's loader has its own generator
    history = History(log, saved["history"] if saved else None)
    first = saved["step"] if saved else 0
    summary: dict[str, float] = {}
    step = first * steps_per_epoch
    step_loss = compute.compiled(_MethodLoss(method, encoder))
    for epoch in range(first, cfg.epochs):
        encoder.train()
        method.train()
        epoch_logs: dict[str, list[float]] = {}
        loader = epoch_loader(views, batch, seed + epoch, compute.pin_memory)
        for batch_views, _ in tqdm(
            loader, desc=f"{cfg.method} {epoch + 1}/{cfg.epochs}", unit="step", mininterval=1.0
        ):
            for group in opt.param_groups:
                group["lr"] = warmup_cosine(step, total, peak, warmup_steps=warmup)
            with compute.autocast():
                loss, logs = step_loss(compute.to_device(list(batch_views)), step)
            loss = loss.float()
            check_finite(loss, f"pretrain ({cfg.method})", epoch + 1, step)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            method.after_step(encoder, step, total)
            for key, value in {"train/loss": loss.item(), **logs}.items():
                epoch_logs.setdefault(key, []).append(value)
            step += 1
        summary = {key: float(np.mean(values)) for key, values in epoch_logs.items()}
        summary["train/lr"] = opt.param_groups[0]["lr"]
        if monitor is not None:
            train_f = encode(encoder, images, monitor.train_index, compute=compute)
            test_f = encode(encoder, images, monitor.test_index, compute=compute)
            summary.update(representation_health(torch.cat([train_f, test_f])))
            if len(monitor.test_index):
                summary["knn/accuracy"] = knn_accuracy(
                    train_f,
                    torch.as_tensor(monitor.train_labels),
                    test_f,
                    torch.as_tensor(monitor.test_labels),
                    k=monitor.k,
                )
            check_collapse(summary, epoch + 1)
        history(summary, epoch + 1)
        if resume and resume.due(epoch + 1, cfg.epochs):
            resume.save_state(epoch + 1, modules, transforms, history)
    encoder.cpu()
    return summary


class _MethodLoss(torch.nn.Module):
    """The method's loss on the encoder as one module's forward, what torch.compile takes."""

    def __init__(self, method: torch.nn.Module, encoder: Encoder):
        super().__init__()
        self.method, self.encoder = method, encoder

    def forward(self, views: list[torch.Tensor], step: int) -> tuple[torch.Tensor, dict[str, float]]:
        return self.method.loss(self.encoder, views, step)
