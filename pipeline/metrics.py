"""Evaluation and monitoring metrics: functions of arrays."""

from __future__ import annotations

import numpy as np
import torch


def accuracy(pred: np.ndarray, labels: np.ndarray) -> float:
    return float((pred == labels).mean()) if len(labels) else float("nan")


def clearly_better(hits: np.ndarray, than: np.ndarray, margin_se: float = 1.645) -> bool:
    """Whether model A (`hits`: 1 per held-out image it got right) beats model B (`than`, the same images)
    by more than `margin_se` standard errors of the paired per-image difference d = hits - than:
    mean(d) > margin_se * std(d) / sqrt(n), std with n - 1; 1.645: a one-sided paired test at the 5 %
    level. A few dozen held-out images move accuracy by whole points per image, so a difference within
    this margin is noise, not evidence."""
    diff = np.asarray(hits, dtype=np.float64) - np.asarray(than, dtype=np.float64)
    if len(diff) < 2:
        return False
    return bool(diff.mean() > margin_se * diff.std(ddof=1) / np.sqrt(len(diff)))


def _confidence_bins(probs: np.ndarray, labels: np.ndarray, bins: int):
    """Per equal-width bin of max probability ((b/B, (b+1)/B], the first includes 0): counts, hits and
    confidence sums."""
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    hits = np.bincount(which, weights=correct, minlength=bins)
    conf = np.bincount(which, weights=confidence, minlength=bins)
    return edges, count, hits, conf


def reliability_bins(
    probs: np.ndarray, labels: np.ndarray, bins: int = 15
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reliability diagram data: (bin centers, accuracy per bin, share of images per bin); empty bins: 0."""
    edges, count, hits, _ = _confidence_bins(probs, labels, bins)
    accuracy = np.divide(hits, count, out=np.zeros(bins), where=count > 0)
    return (edges[:-1] + edges[1:]) / 2, accuracy, count / max(len(labels), 1)


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """ECE (Guo et al. 2017): sum_b |B_b|/N * |acc(B_b) - conf(B_b)| over equal-width confidence bins."""
    _, count, hits, conf = _confidence_bins(probs, labels, bins)
    return float(np.abs(hits - conf).sum() / max(len(labels), 1))


def confusion_matrix(pred: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """(C, C) counts, rows = true class, columns = predicted class."""
    return np.bincount(labels * num_classes + pred, minlength=num_classes**2).reshape(
        num_classes, num_classes
    )


def ood_auroc(in_distribution_scores: np.ndarray, ood_scores: np.ndarray) -> float:
    """Area under the ROC curve of an OOD score (higher = more OOD), OOD as the positive class.

        AUROC = P(s_ood > s_id) + 0.5 P(s_ood = s_id)     (the Mann-Whitney U statistic / (n_id n_ood))

    1 separates perfectly, 0.5 is chance.
    """
    if len(in_distribution_scores) == 0 or len(ood_scores) == 0:
        return float("nan")
    both = np.concatenate([in_distribution_scores, ood_scores])
    _, inverse, counts = np.unique(both, return_inverse=True, return_counts=True)
    last = np.cumsum(counts)  # ranks 1..N in sorted order; tied values share the mean of their ranks
    ranks = ((last - counts + 1 + last) / 2)[inverse]
    n_id, n_ood = len(in_distribution_scores), len(ood_scores)
    u = ranks[n_id:].sum() - n_ood * (n_ood + 1) / 2
    return float(u / (n_id * n_ood))


def fpr_at_tpr(in_distribution_scores: np.ndarray, ood_scores: np.ndarray, tpr: float = 0.95) -> float:
    """FPR@95: the share of OOD samples kept when the threshold keeps a share `tpr` of in-distribution ones.

    t = the `tpr` quantile of the in-distribution scores;  FPR = mean(s_ood <= t)
    """
    if len(in_distribution_scores) == 0 or len(ood_scores) == 0:
        return float("nan")
    threshold = np.quantile(in_distribution_scores, tpr, method="higher")
    return float((ood_scores <= threshold).mean())


def knn_accuracy(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    k: int = 20,
    temperature: float = 0.07,
) -> float:
    """Weighted kNN classifier on cosine similarity (Wu et al. 2018): votes exp(sim / T) of the k nearest."""
    num_classes = int(train_labels.max()) + 1
    train = torch.nn.functional.normalize(train_features, dim=1)
    test = torch.nn.functional.normalize(test_features, dim=1)
    k = min(k, len(train))
    sim, idx = (test @ train.T).topk(k, dim=1)  # (T, k)
    votes = torch.zeros(len(test), num_classes).scatter_add_(1, train_labels[idx], (sim / temperature).exp())
    return float((votes.argmax(1) == test_labels).float().mean())


def effective_rank(features: torch.Tensor) -> float:
    """exp of the entropy of the normalized singular values of the centered features (Roy & Vetterli 2007).

    Equals D for isotropic features and 1 when they have collapsed onto a line.
    """
    centered = features - features.mean(dim=0, keepdim=True)
    s = torch.linalg.svdvals(centered.double())
    p = s / s.sum().clamp_min(1e-12)
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def fit_linear_head(
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    steps: int = 500,
    lr: float = 0.1,
    weight_decay: float = 1e-4,
    generator: torch.Generator | None = None,
) -> torch.nn.Linear:
    """Softmax regression on fixed features, full-batch Adam; initialised from `generator` when given."""
    head = torch.nn.Linear(x.shape[1], num_classes)
    if generator is not None:  # independent of the global RNG: the same head whatever ran before
        with torch.no_grad():
            head.weight.copy_(torch.randn(head.weight.shape, generator=generator) * 0.01)
            head.bias.zero_()
    opt = torch.optim.Adam(head.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(head(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return head


def linear_probe_accuracy(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    steps: int = 500,
    lr: float = 0.1,
    weight_decay: float = 1e-4,
) -> float:
    """Test accuracy of a softmax classifier trained on frozen, standardized features (full-batch Adam)."""
    mean, std = train_features.mean(0), train_features.std(0).clamp_min(1e-6)
    x_train, x_test = (train_features - mean) / std, (test_features - mean) / std
    generator = torch.Generator().manual_seed(0)  # the same probe whatever ran before it
    num_classes = int(train_labels.max()) + 1
    probe = fit_linear_head(x_train, train_labels, num_classes, steps, lr, weight_decay, generator)
    with torch.no_grad():
        return float((probe(x_test).argmax(1) == test_labels).float().mean())
