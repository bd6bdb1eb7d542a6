"""What every training and inference stage runs under: seeding and determinism, the divergence guard, the
type of the logging callback and what a training loop is set up with."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from pipeline.compute import CPU, Compute
from pipeline.distributed import SINGLE, World
from pipeline.resume import ResumePoint

LogFn = Callable[[dict[str, float], int], None]

DIVERGED = 1e6  # a loss above this has diverged: every loss of the pipeline starts below about 1e3


def seed_everything(seed: int) -> None:
    """Seed every generator and require deterministic kernels, so two runs on CPU give the same numbers.

    The flag is set on torch._C directly: torch.use_deterministic_algorithms also sets TorchInductor's
    `deterministic`, and importing TorchInductor for that costs every stage about 1.5 s of start-up. It only
    matters to torch.compile, which sets it itself (Compute.compiled)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch._C._set_deterministic_algorithms(True)


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
class LoopSetup:
    """What a training loop runs with besides its model, data and section of params.yaml: the image size and
    seed, where it logs, its resume point (or none), the torchrun world (pretrain: one process), the compute
    device and precision, and the log cadence in steps (teacher, student; pretrain logs per epoch)."""

    image_size: int
    seed: int
    log: LogFn
    resume: ResumePoint | None = None
    world: World = SINGLE
    compute: Compute = CPU
    log_every: int = 25
