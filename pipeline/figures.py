"""Figures a person would rather look at than read: one function per figure, each returns a matplotlib Figure.

The pseudolabel stage logs the round's confidence histogram, OOD-score histogram, per-class counts and image
grids; the evaluate stage logs each round's confusion matrix and reliability diagram; `compare` plots rounds
side by side. Rendering uses the
non-interactive Agg backend, so no screen is needed.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from pipeline.metrics import reliability_bins  # noqa: E402
from pipeline.pseudo.pool import OODDecision  # noqa: E402


def confusion_figure(confusion: np.ndarray, classes: list[str], title: str) -> Figure:
    """Row-normalised confusion matrix (rows: true class), counts written in the cells."""
    rates = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1)
    size = 2.5 + 0.45 * len(classes)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ticks = np.arange(len(classes))
    ax.set_xticks(ticks, classes, rotation=45, ha="right")
    ax.set_yticks(ticks, classes)
    for (i, j), n in np.ndenumerate(confusion):
        if n:
            ax.text(
                j,
                i,
                str(n),
                ha="center",
                va="center",
                fontsize=7,
                color="white" if rates[i, j] > 0.5 else "black",
            )
    ax.set(xlabel="predicted", ylabel="true", title=title)
    fig.colorbar(im, ax=ax, fraction=0.046, label="share of the true class")
    fig.tight_layout()
    return fig


def reliability_figure(probs: np.ndarray, labels: np.ndarray, bins: int, title: str) -> Figure:
    """Accuracy per confidence bin against the diagonal, with the share of images in each bin."""
    centers, accuracy, share = reliability_bins(probs, labels, bins)
    width = 1.0 / bins
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(5, 5.5), sharex=True, height_ratios=[3, 1])
    top.bar(centers, accuracy, width=width, edgecolor="black", label="accuracy")
    top.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
    top.set(ylabel="accuracy", ylim=(0, 1), title=title)
    top.legend(loc="upper left")
    bottom.bar(centers, share, width=width, color="gray")
    bottom.set(xlabel="confidence", ylabel="share of images", xlim=(0, 1))
    fig.tight_layout()
    return fig


def confidence_figure(table: pd.DataFrame, title: str) -> Figure:
    """Teacher confidence of accepted vs rejected pseudo-labels (the round's table)."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    edges = np.linspace(0, 1, 41)
    for accepted, label, color in ((True, "accepted", "tab:green"), (False, "rejected", "tab:red")):
        ax.hist(
            table.loc[table["accepted"] == accepted, "confidence"],
            bins=edges,
            alpha=0.6,
            label=f"{label} ({int((table['accepted'] == accepted).sum()):,})",
            color=color,
        )
    ax.set(xlabel="teacher confidence (max soft label)", ylabel="images", title=title)
    ax.legend()
    fig.tight_layout()
    return fig


def ood_figure(pool_scores: np.ndarray, held_out: np.ndarray, threshold: float, title: str) -> Figure:
    """OOD scores of the unlabeled pool and of held-out labeled images, with the calibrated threshold.

    The axis spans the 0.5-99.5 % range of all scores (and the threshold); outliers pile up in the end bins.
    """
    fig, ax = plt.subplots(figsize=(6, 3.5))
    both = np.concatenate([pool_scores, held_out, [threshold]])
    lo, hi = np.percentile(both, [0.5, 99.5])
    lo, hi = min(lo, threshold), max(hi, threshold, lo + 1e-9)
    edges = np.linspace(lo, hi, 51)
    ax.hist(np.clip(pool_scores, lo, hi), bins=edges, alpha=0.6, density=True, label="unlabeled pool")
    if len(held_out):
        ax.hist(np.clip(held_out, lo, hi), bins=edges, alpha=0.6, density=True,
                label="held-out labeled (in-distribution)")  # fmt: skip
    ax.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.3g}")
    ax.set(xlabel="OOD score (higher: more out-of-distribution)", ylabel="density", title=title)
    ax.legend()
    fig.tight_layout()
    return fig


def class_counts_figure(table: pd.DataFrame, classes: list[str], title: str) -> Figure:
    """Accepted pseudo-labels per predicted class (copies included), beside all predictions."""
    predicted = table["pseudo_label"].value_counts().reindex(classes, fill_value=0)
    accepted = table.loc[table["accepted"]].groupby("pseudo_label")["copies"].sum()
    accepted = accepted.reindex(classes, fill_value=0)
    x = np.arange(len(classes))
    fig, ax = plt.subplots(figsize=(1.5 + 0.6 * len(classes), 3.5))
    ax.bar(x - 0.2, predicted.to_numpy(), width=0.4, label="predicted", color="lightgray")
    ax.bar(x + 0.2, accepted.to_numpy(), width=0.4, label="accepted (with copies)", color="tab:green")
    ax.set_xticks(x, classes, rotation=45, ha="right")
    ax.set(ylabel="images", title=title)
    ax.legend()
    fig.tight_layout()
    return fig


def round_changes_figure(per_class: pd.DataFrame, title: str) -> Figure:
    """Per class, the accepted pseudo-labels a round kept, relabeled (in: to this class, out: from it), let in
    and let go against the previous round (pipeline.pseudo.changes)."""
    kinds = {"kept": "lightgray", "relabeled_in": "tab:blue", "relabeled_out": "tab:orange",
             "entered": "tab:green", "left": "tab:red"}  # fmt: skip
    rows = per_class.drop(index="total")
    y, height = np.arange(len(rows)), 0.8 / len(kinds)
    fig, ax = plt.subplots(figsize=(7, 1.5 + 0.45 * len(rows)))
    for k, (kind, color) in enumerate(kinds.items()):
        ax.barh(y + (k - 2) * height, rows[kind].to_numpy(), height=height, color=color, label=kind)
    ax.set_yticks(y, rows.index)
    ax.invert_yaxis()
    ax.set(xlabel="accepted images", title=title)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def image_grid(
    images: list[list[np.ndarray]], row_titles: list[str], captions: list[list[str]], title: str
) -> Figure:
    """Rows of uint8 images (H, W, C); a title per row and a caption under each image."""
    rows, cols = len(images), max((len(r) for r in images), default=0)
    fig, axes = plt.subplots(
        max(rows, 1), max(cols, 1), figsize=(1.1 * max(cols, 1) + 1.2, 1.25 * max(rows, 1)), squeeze=False
    )
    for ax in axes.flat:
        ax.axis("off")
    for i, (row, caps) in enumerate(zip(images, captions, strict=True)):
        axes[i, 0].text(
            -0.15, 0.5, row_titles[i], transform=axes[i, 0].transAxes, ha="right", va="center", fontsize=8
        )
        for j, (img, cap) in enumerate(zip(row, caps, strict=True)):
            gray = img.shape[-1] == 1
            axes[i, j].imshow(img[..., 0] if gray else img, cmap="gray" if gray else None, vmin=0, vmax=255)
            axes[i, j].set_title(cap, fontsize=6, pad=2)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def accepted_grid(
    table: pd.DataFrame, images: np.ndarray, classes: list[str], per_class: int, title: str
) -> Figure:
    """Per predicted class, the most confident accepted pseudo-labels."""
    rows, caps = [], []
    for name in classes:
        top = table[table["accepted"] & (table["pseudo_label"] == name)].nlargest(per_class, "confidence")
        rows.append([images[i] for i in top["index"]])
        caps.append([f"{c:.2f}" for c in top["confidence"]])
    return image_grid(rows, classes, caps, title)


def ood_rejects_grid(table: pd.DataFrame, images: np.ndarray, count: int, columns: int, title: str) -> Figure:
    """The images rejected as OOD with the highest OOD scores, captioned with the teacher's guess."""
    top = table[~table["in_distribution"]].nlargest(count, "ood_score")
    cells = [
        (images[i], f"{p} {s:.3g}")
        for i, p, s in zip(top["index"], top["pseudo_label"], top["ood_score"], strict=True)
    ]
    rows = [cells[k : k + columns] for k in range(0, len(cells), columns)] or [[]]
    return image_grid(
        [[img for img, _ in r] for r in rows], [""] * len(rows), [[c for _, c in r] for r in rows], title
    )


def pseudo_label_figures(
    table: pd.DataFrame,
    images: np.ndarray,
    classes: list[str],
    ood: OODDecision,
    round_name: str,
) -> dict[str, Figure]:
    """The figures of one pseudolabel round, by artifact file name."""
    figures = {
        "confidence.png": confidence_figure(table, f"{round_name}: teacher confidence"),
        "class_counts.png": class_counts_figure(table, classes, f"{round_name}: pseudo-labels per class"),
        "accepted_grid.png": accepted_grid(
            table, images, classes, 8, f"{round_name}: most confident accepted"
        ),
    }
    if np.isfinite(ood.threshold):  # an OOD filter ran
        figures["ood_scores.png"] = ood_figure(
            table["ood_score"].to_numpy(), ood.held_out, ood.threshold, f"{round_name}: OOD scores"
        )
        figures["ood_rejects_grid.png"] = ood_rejects_grid(
            table, images, 32, 8, f"{round_name}: highest-scoring OOD rejects (teacher's guess, score)"
        )
    return {f"figures/{name}": fig for name, fig in figures.items()}


def evaluation_figures(
    confusion: np.ndarray,
    probs: np.ndarray,
    labels: np.ndarray,
    classes: list[str],
    bins: int,
    round_name: str,
) -> dict[str, Figure]:
    """Confusion matrix and reliability diagram of one round's model on the test set."""
    return {
        f"{round_name}/confusion.png": confusion_figure(confusion, classes, f"{round_name}: test confusion"),
        f"{round_name}/reliability.png": reliability_figure(
            probs, labels, bins, f"{round_name}: reliability"
        ),
    }


def compare_figure(runs) -> Figure:
    """Test accuracy, pseudo-label precision and accepted count per round, one line per pipeline run
    (`runs`: pipeline.compare.PipelineRounds)."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for i, run in enumerate(runs, 1):
        x, label = list(run.rounds.index), f"[{i}] {run.run_id[:8] or 'metrics'}"
        for ax, column in zip(axes, ("test accuracy", "PL precision", "PL accepted"), strict=True):
            ax.plot(x, run.rounds[column].astype(float), marker="o", label=label)
            ax.set(title=column, xlabel="round")
    axes[0].legend()
    fig.tight_layout()
    return fig
