"""The per-sample pseudo-label table of a round and the statistics logged for it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.data.store import Split
from pipeline.metrics import fpr_at_tpr, ood_auroc
from pipeline.pseudo.select import Selection

TABLE_COLUMNS = [
    "round",
    "sha256",
    "path",
    "index",
    "pseudo_label",
    "soft_label",
    "confidence",
    "threshold",
    "weight",
    "copies",
    "ood_score",
    "ood_weight",
    "in_distribution",
    "accepted",
    "reason",
]


def pseudo_label_table(
    round_name: str,
    pool: Split,
    probs: np.ndarray,
    selection: Selection,
    ood_score: np.ndarray,
    ood_weight: np.ndarray,
    classes: list[str],
) -> pd.DataFrame:
    """One row per unlabeled image: hash, path, teacher soft label, confidence, OOD score and weight,
    decision. `weight` is the selection's weight times the OOD weight (1 unless the filter fell back to
    soft weighting)."""
    frame = pd.DataFrame(
        {
            "round": round_name,
            "sha256": pool.sha256,
            "path": pool.paths,
            "index": pool.index,
            "pseudo_label": np.asarray(classes)[selection.pseudo_label],
            "soft_label": list(probs.astype(np.float32)),
            "confidence": selection.confidence,
            "threshold": selection.threshold,
            "weight": selection.weight * ood_weight,
            "copies": selection.copies,
            "ood_score": ood_score,
            "ood_weight": ood_weight,
            "in_distribution": selection.in_distribution,
            "accepted": selection.accepted,
            "reason": selection.reason,
        }
    )
    return frame[TABLE_COLUMNS]


def read_analysis_labels(path: str | Path) -> pd.Series:
    """True labels of unlabeled images (path relative to the unlabeled folder -> class), for analysis only.

    A missing file or a file with only a header gives an empty Series: precision is then not reported.
    """
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        return pd.Series(dtype=str)
    frame = pd.read_csv(path, dtype=str)
    missing = {"path", "label"} - set(frame.columns)
    if missing:
        raise ValueError(f"{path}: analysis file needs columns path,label; missing {sorted(missing)}")
    repeated = frame["path"][frame["path"].duplicated()].unique().tolist()
    if repeated:
        raise ValueError(f"{path}: a path may have one label; repeated: {repeated[:3]}")
    return frame.dropna(subset=["label"]).set_index("path")["label"]  # an empty label: not known


def pseudo_label_stats(table: pd.DataFrame, classes: list[str], truth: pd.Series) -> dict[str, float]:
    """Round statistics under namespaced keys: pl/* for pseudo-labels, ood/* for the OOD filter.

    pl/precision is the share of accepted pseudo-labels equal to the analysis label (only where known);
    pl/coverage is accepted / pool size.
    """
    accepted = table[table["accepted"]]
    stats = {
        "pl/pool": float(len(table)),
        "pl/accepted": float(len(accepted)),
        "pl/coverage": float(len(accepted) / max(1, len(table))),
        "pl/mean_confidence": float(table["confidence"].mean()) if len(table) else 0.0,
        "pl/mean_confidence_accepted": float(accepted["confidence"].mean()) if len(accepted) else 0.0,
        "pl/low_confidence": float((table["reason"] == "low_confidence").sum()),
        "pl/over_quota": float((table["reason"] == "over_quota").sum()),
        "pl/training_copies": float(table["copies"].sum()),
        "pl/mean_weight_accepted": float(accepted["weight"].mean()) if len(accepted) else 0.0,
        "ood/rejected": float((~table["in_distribution"]).sum()),
        "ood/rejected_rate": float((~table["in_distribution"]).mean()) if len(table) else 0.0,
    }
    counts = accepted["pseudo_label"].value_counts()
    for c in classes:
        stats[f"pl/count/{c}"] = float(counts.get(c, 0))
    true_label = truth_of(table["path"], truth)
    known = table["accepted"].to_numpy() & (true_label != "")
    if known.any():
        stats["pl/precision"] = float((table["pseudo_label"].to_numpy()[known] == true_label[known]).mean())
    has_truth = true_label != ""
    in_pool = table[has_truth]
    if len(in_pool):
        stats["pl/teacher_pool_accuracy"] = float(
            (in_pool["pseudo_label"].to_numpy() == true_label[has_truth]).mean()
        )
    stats.update(ood_truth_stats(in_pool, true_label[has_truth], classes))
    return stats


def truth_of(paths: pd.Series, truth: pd.Series) -> np.ndarray:
    """The analysis label of each path ('' where not known), matched in Arrow (pyarrow.compute.index_in):
    a pool of a million paths is not turned into a million Python strings to look them up."""
    if truth.empty:
        return np.full(len(paths), "", dtype=object)
    position = pc.index_in(pa.array(paths, pa.string()), value_set=pa.array(truth.index, pa.string()))
    labels = np.append(truth.to_numpy(object), "")  # position -1 (not found): ''
    return labels[position.fill_null(-1).to_numpy()]


def ood_truth_stats(table: pd.DataFrame, true_label: np.ndarray, classes: list[str]) -> dict[str, float]:
    """How well the OOD filter found the pool images whose analysis label is not one of `classes`.

    ood/auroc and ood/fpr95 rate the score itself, ood/recall and ood/false_rejection the calibrated decision.
    Empty when the analysis labels name no such image (no OOD truth to compare with); without in-distribution
    images (a pool that is all OOD) only the decision's keys, as the score has nothing to be ranked against.
    """
    is_ood = ~np.isin(true_label, classes)
    if not is_ood.any():
        return {}
    scores, kept = table["ood_score"].to_numpy(), table["in_distribution"].to_numpy()
    stats = {
        "ood/true_ood": float(is_ood.sum()),
        "ood/recall": float((~kept[is_ood]).mean()),
        "pl/accepted_ood": float((table["accepted"].to_numpy() & is_ood).sum()),
    }
    if is_ood.all():
        return stats
    return {
        **stats,
        "ood/auroc": ood_auroc(scores[~is_ood], scores[is_ood]),
        "ood/fpr95": fpr_at_tpr(scores[~is_ood], scores[is_ood], 0.95),
        "ood/false_rejection": float((~kept[~is_ood]).mean()),
    }
