"""Evaluation of a round's model on the test images, with its round's pseudo-label statistics."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.checkpoint import load_classifier
from pipeline.compute import CPU, Compute
from pipeline.data.store import Prepared, Split
from pipeline.inference import predict
from pipeline.metrics import accuracy, confusion_matrix, expected_calibration_error
from pipeline.pseudo.report import pseudo_label_stats
from pipeline.pseudo.select import softmax


def test_metrics(probs: np.ndarray, labels: np.ndarray, ece_bins: int) -> tuple[dict[str, float], np.ndarray]:
    """Test accuracy and ECE of one model from its softmax probabilities, and its confusion matrix."""
    pred = probs.argmax(axis=1)
    metrics = {
        "test/accuracy": accuracy(pred, labels),
        "test/ece": expected_calibration_error(probs, labels, ece_bins),
        "test/images": float(len(labels)),
    }
    return metrics, confusion_matrix(pred, labels, probs.shape[1])


@dataclass(frozen=True)
class RoundEvaluation:
    metrics: dict[str, float]  # test/* and, for a student's round, pl/* and ood/*
    confusion: np.ndarray  # (C, C), rows the true class
    probs: np.ndarray  # (N, C) softmax on the test images
    val_hits: np.ndarray | None = None  # (V,) 1 per validation image the model got right

    def confusion_frame(self, classes: list[str]) -> pd.DataFrame:
        return pd.DataFrame(self.confusion, index=classes, columns=classes)


def evaluate_round(
    *,
    model_file: Path,
    table_file: Path,
    data: Prepared,
    test: Split,
    truth: pd.Series,
    ece_bins: int,
    validation: Split | None = None,
    compute: Compute = CPU,
) -> RoundEvaluation:
    """Test metrics of the model in `model_file` on the `test` split, its accuracy on the `validation` images
    (`val/accuracy`, when there are some), plus the statistics of its round's pseudo-label table
    (`table_file`, absent for the teacher), with `truth` the analysis labels of the pool."""
    model, _ = load_classifier(model_file)
    logits, _ = predict(model, data.images, test.index, compute=compute)
    probs = softmax(logits)
    metrics, confusion = test_metrics(probs, test.labels, ece_bins)
    val_hits = None
    if validation is not None:
        val_logits, _ = predict(model, data.images, validation.index, compute=compute)
        val_hits = (val_logits.argmax(axis=1) == validation.labels).astype(np.int64)
        metrics["val/accuracy"] = float(val_hits.mean())
    if Path(table_file).is_file():
        metrics.update(pseudo_label_stats(pd.read_parquet(table_file), data.classes, truth))
    return RoundEvaluation(metrics, confusion, probs, val_hits)
