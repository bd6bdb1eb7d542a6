"""What every training and inference stage runs under: seeding and determinism, the divergence guard and
the type of the logging callback."""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import numpy as np
import torch

LogFn = Callable[[dict[str, float], int], None]

DIVERGED = 1e6  # a loss above this has diverged: every loss of the pipeline starts below about 1e3


def seed_everything(seed: int) -> None:
    """Seed every generator and require deterministic kernels, so two runs on CPU give the same numbers."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)


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
