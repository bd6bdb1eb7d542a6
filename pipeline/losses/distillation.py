"""Self-distillation losses: BYOL and DINO."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def byol_loss(online_predictions: torch.Tensor, target_projections: torch.Tensor) -> torch.Tensor:
    """BYOL's normalized regression loss (Grill et al. 2020, eq. 2), averaged over the batch:

        L = (1/N) sum_n || q_n/||q_n|| - z'_n/||z'_n|| ||^2 = (1/N) sum_n (2 - 2 cos(q_n, z'_n))

    Call it for both view orders and add the two (the paper's symmetrized loss). The target projections come
    from the EMA target network and carry no gradient (the caller detaches them).

    Args:
        online_predictions: (N, D) predictor outputs q of the online network on one view.
        target_projections: (N, D) target-network projections z' of the other view.
    """
    assert online_predictions.shape == target_projections.shape, (
        f"{online_predictions.shape} vs {target_projections.shape}"
    )
    cos = F.cosine_similarity(online_predictions, target_projections, dim=1)  # (N,)
    return (2 - 2 * cos).mean()


def dino_loss(
    student_logits: list[torch.Tensor],
    teacher_logits: list[torch.Tensor],
    center: torch.Tensor,
    student_temperature: float,
    teacher_temperature: float,
) -> torch.Tensor:
    """DINO's cross-entropy between a centered, sharpened teacher and the student (Caron et al. 2021, eq. 3).

        P_t = softmax((g_t(x) - c) / t_t),   P_s = softmax(g_s(x') / t_s)
        L = mean over view pairs (teacher i, student j), i != j, of (1/N) sum_n -sum_k P_t[n,k] log P_s[n,k]

    Centering (subtracting c, an EMA of the teacher's mean output) and sharpening (t_t < t_s) together avoid
    collapse. The teacher outputs carry no gradient (the caller detaches them).

    Args:
        student_logits: V tensors (N, K), the student head on every view (global and local crops).
        teacher_logits: G tensors (N, K), the teacher head on the global views, which are views 0..G-1.
        center: (K,) or (1, K) running center c.
    """
    assert len(teacher_logits) <= len(student_logits), "teacher sees the global views only"
    teacher_probs = [F.softmax((t - center) / teacher_temperature, dim=-1) for t in teacher_logits]
    student_log_probs = [F.log_softmax(s / student_temperature, dim=-1) for s in student_logits]
    total, pairs = student_logits[0].new_zeros(()), 0
    for i, p_t in enumerate(teacher_probs):
        for j, log_p_s in enumerate(student_log_probs):
            if i == j:
                continue  # same view: no prediction task
            total = total + (-(p_t * log_p_s).sum(dim=-1)).mean()
            pairs += 1
    assert pairs > 0, "DINO needs at least two views"
    return total / pairs


@torch.no_grad()
def update_center(center: torch.Tensor, teacher_logits: list[torch.Tensor], momentum: float) -> torch.Tensor:
    """c <- m c + (1 - m) mean over the batch and global views of the teacher output (DINO, eq. 4)."""
    batch_center = torch.cat(teacher_logits).mean(dim=0, keepdim=True)
    return center * momentum + batch_center * (1 - momentum)
