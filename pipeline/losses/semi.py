"""Semi-supervised losses: pseudo-label cross-entropy and entropy minimization."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def weighted_soft_cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """Confidence-weighted cross-entropy against soft (or one-hot) pseudo-labels, masked mean over the batch.

        L = (1 / B) * sum_b w_b * ( - sum_c q_bc * log softmax(logits_b)_c )

    Rejected samples carry w_b = 0, so, as in FixMatch (Sohn et al. 2020, eq. 4), the mean is over the whole
    batch of B, not over accepted samples only: the loss shrinks when fewer pseudo-labels pass.

    Args:
        logits: (B, C) student logits.
        targets: (B, C) target distributions q (rows sum to 1; one-hot for hard labels).
        weights: (B,) per-sample weights w >= 0.
    """
    assert logits.shape == targets.shape, f"logits {logits.shape} vs targets {targets.shape}"
    assert weights.shape == logits.shape[:1], f"weights {weights.shape} vs batch {logits.shape[0]}"
    per_sample = -(targets * F.log_softmax(logits, dim=1)).sum(dim=1)  # (B,)
    return (weights * per_sample).mean()


def entropy_minimization(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean prediction entropy over masked samples (Grandvalet & Bengio 2005).

        H = (1 / sum_b m_b) * sum_b m_b * ( - sum_c p_bc * log p_bc ),   p_b = softmax(logits_b)

    Minimizing H pushes decision boundaries away from dense regions of unlabeled data. Returns 0 when the
    mask is empty.

    Args:
        logits: (B, C) logits on unlabeled images.
        mask: (B,) 1 for samples that count (e.g. passed the OOD filter), 0 otherwise.
    """
    assert mask.shape == logits.shape[:1], f"mask {mask.shape} vs batch {logits.shape[0]}"
    log_p = F.log_softmax(logits, dim=1)
    per_sample = -(log_p.exp() * log_p).sum(dim=1)  # (B,)
    mask = mask.to(per_sample.dtype)
    return (mask * per_sample).sum() / mask.sum().clamp_min(1.0)


def align_distribution(probs: torch.Tensor, prior: torch.Tensor, model_mean: torch.Tensor) -> torch.Tensor:
    """Distribution alignment (Berthelot et al. 2020, ReMixMatch sec. 3.2; SoftMatch's uniform alignment).

        p~_b = Normalize( p_b * prior / model_mean ),   Normalize(x) = x / sum_c x_c

    `model_mean` is a running mean of the model's predictions on unlabeled data: a class the model predicts
    more often than the prior says is scaled down in every prediction, so pseudo-labels cannot drift towards
    a few classes (confirmation bias).

    Args:
        probs: (B, C) predicted distributions p.
        prior: (C,) the target class distribution (uniform, or the labeled set's class shares).
        model_mean: (C,) running mean of p over unlabeled batches.
    """
    aligned = probs * (prior / model_mean.clamp_min(1e-12))
    return aligned / aligned.sum(dim=1, keepdim=True)


def class_prior(alignment: str, labels, num_classes: int) -> torch.Tensor:
    """The distribution alignment's target: the labeled images' class shares (`labeled`), else uniform."""
    if alignment == "labeled":
        counts = torch.bincount(torch.as_tensor(labels, dtype=torch.long), minlength=num_classes).double()
        return (counts / counts.sum()).float()
    return torch.full((num_classes,), 1.0 / num_classes)


def self_adaptive_mask(probs: torch.Tensor, tau: torch.Tensor, class_mean: torch.Tensor) -> torch.Tensor:
    """FreeMatch's self-adaptive threshold mask (Wang et al. 2023, eq. 5-8). (B, C) -> (B,) floats 0/1.

        tau(c) = MaxNorm(class_mean)_c * tau = class_mean_c / max_k class_mean_k * tau
        m_b    = 1[ max_c p_bc >= tau(argmax_c p_bc) ]

    `tau` is the running mean of the max confidence (the global threshold) and `class_mean` the running mean
    of p (the local class expectation): as the model grows confident the thresholds rise, and a class the
    model rarely predicts gets a lower one.
    """
    thresholds = class_mean / class_mean.max() * tau
    confidence, label = probs.max(dim=1)
    return (confidence >= thresholds[label]).to(probs.dtype)


def truncated_gaussian_weight(
    confidence: torch.Tensor, mean: torch.Tensor, var: torch.Tensor, n_sigma: float = 2.0
) -> torch.Tensor:
    """SoftMatch's sample weight (Chen et al. 2023, eq. 7), lambda_max = 1. (B,) -> (B,).

        w = exp( -(max_c p_c - mu)^2 / (2 sigma^2 / n_sigma^2) )   if max_c p_c < mu,   else 1

    with mu, sigma^2 running estimates of the mean and variance of the confidence. n_sigma = 2 as in the
    authors' code: a sample one sigma below the mean gets exp(-2) = 0.14.
    """
    below = (confidence - mean).clamp_max(0.0)
    return torch.exp(-(below**2) / (2 * var.clamp_min(1e-12) / n_sigma**2))


def consistency_loss(
    logits_strong: torch.Tensor, probs_weak: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """FixMatch's unlabeled loss (Sohn et al. 2020, eq. 4) with a per-sample weight:

        L_u = (1 / B) * sum_b w_b * CE( onehot(argmax_c q_b), softmax(logits_strong_b) )

    q_b is the prediction on the weak view of image b, a fixed target: no gradient flows through it (it is
    detached here). w_b is its mask (0 / 1) or weight; the mean is over the whole batch.
    """
    target = F.one_hot(probs_weak.detach().argmax(dim=1), probs_weak.shape[1]).to(logits_strong.dtype)
    return weighted_soft_cross_entropy(logits_strong, target, weights.detach())
