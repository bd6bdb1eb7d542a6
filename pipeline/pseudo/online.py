"""Online pseudo-labels inside a student round (`student.consistency: online`).

Each step, the model's prediction on a weak view of every unlabeled image is the target of its strong view
(FixMatch, Sohn et al. 2020), recomputed as the model learns, instead of a target fixed by the previous round.
`OnlineTargets` holds the running statistics that make it self-adaptive and self-balancing, updated from every
batch of weak-view predictions:

- distribution alignment (ReMixMatch, SoftMatch): predictions are rescaled by prior / running class mean, so
  pseudo-labels cannot drift towards the classes the model already favours;
- the mask or weight of `student.online.mask`: FreeMatch's self-adaptive class thresholds, SoftMatch's
  truncated Gaussian weight, or FixMatch's fixed threshold.

The papers run for about a million steps with an EMA momentum of 0.999 from a uniform start. A round here is a
few hundred steps, so the statistics start at the first batch's values (no start-up bias) and use
`student.online.momentum` (0.99: about the last hundred steps).
"""

from __future__ import annotations

import torch

from pipeline.config.student import OnlineConfig
from pipeline.losses.semi import align_distribution, self_adaptive_mask, truncated_gaussian_weight


class OnlineTargets:
    """Callable: weak-view probabilities (B, C) -> (aligned probabilities, per-sample weights), updating the
    running statistics first. `state_dict` carries them in a resume point."""

    def __init__(self, cfg: OnlineConfig, prior: torch.Tensor):
        self.cfg, self.prior = cfg, prior / prior.sum()
        self.stats: dict[str, torch.Tensor] = {}

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {name: value.clone() for name, value in self.stats.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.stats = {name: value.clone() for name, value in state.items()}

    def _update(self, name: str, value: torch.Tensor) -> torch.Tensor:
        m, old = self.cfg.momentum, self.stats.get(name)
        self.stats[name] = value if old is None else m * old + (1 - m) * value
        return self.stats[name]

    @torch.no_grad()
    def __call__(self, probs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        probs = probs.float()
        if self.cfg.alignment != "none":
            model_mean = self._update("model_mean", probs.mean(dim=0))
            probs = align_distribution(probs, self.prior.to(probs.device), model_mean)
        confidence = probs.max(dim=1).values
        mean = self._update("confidence_mean", confidence.mean())  # FreeMatch's tau, SoftMatch's mu
        class_mean = self._update("class_mean", probs.mean(dim=0))
        spread = confidence.var(unbiased=True) if len(confidence) > 1 else torch.zeros_like(mean)
        var = self._update("confidence_var", spread)
        if self.cfg.mask == "freematch":
            weights = self_adaptive_mask(probs, mean, class_mean)
        elif self.cfg.mask == "softmatch":
            weights = truncated_gaussian_weight(confidence, mean, var)
        else:
            weights = (confidence >= self.cfg.threshold).to(probs.dtype)
        return probs, weights

    def threshold(self) -> float:
        """The global confidence threshold in force: FreeMatch's tau, SoftMatch's mean, or the fixed one."""
        if self.cfg.mask == "fixed":
            return self.cfg.threshold
        return float(self.stats["confidence_mean"]) if self.stats else float("nan")
