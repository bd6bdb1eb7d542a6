"""Schedules: pure functions of the step."""

from __future__ import annotations

import math


def warmup_cosine(
    step: int, total_steps: int, peak: float, warmup_steps: int = 0, final: float = 0.0
) -> float:
    """Linear warm-up from 0 to `peak` over `warmup_steps`, then cosine decay to `final` at `total_steps`."""
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return final + 0.5 * (peak - final) * (1 + math.cos(math.pi * progress))


def linear_ramp(step: int, ramp_steps: int, final: float) -> float:
    """0 at step 0, rising linearly to `final` at `ramp_steps` and staying there (`final` at once if 0)."""
    if ramp_steps <= 0:
        return final
    return final * min(1.0, step / ramp_steps)
