"""Evaluation and monitoring metrics: functions of arrays."""

from __future__ import annotations

import numpy as np
import torch


def accuracy(pred: np.ndarray, labels: np.ndarray) -> float:
    return float((pred == labels).mean()) if len(labels) else float("nan")


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """ECE (Guo et al. 2017): sum_b |B_b|/N * |acc(B_b) - conf(B_b)| over equal-width confidence bins."""
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        in_bin = which == b
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(ece)


def confusion_matrix(pred: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """(C, C) counts, rows = true class, columns = predicted class."""
    return np.bincount(labels * num_classes + pred, minlength=num_classes**2).reshape(
        num_classes, num_classes
    )


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
    num_classes = int(train_labels.max()) + 1
    probe = torch.nn.Linear(x_train.shape[1], num_classes)
    opt = torch.optim.Adam(probe.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(probe(x_train), train_labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return float((probe(x_test).argmax(1) == test_labels).float().mean())
