"""Every figure of a round renders to a PNG from a real pseudo-label table and store images."""

import io

import numpy as np
import pandas as pd
import pytest

from pipeline.figures import evaluation_figures, pseudo_label_figures
from pipeline.pseudo.pool import OODDecision

CLASSES = ["a", "b", "c"]


def round_table(n: int = 60, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    confidence = rng.uniform(0.3, 1.0, n)
    ood = rng.normal(size=n)
    return pd.DataFrame(
        {
            "index": np.arange(n),
            "pseudo_label": np.asarray(CLASSES)[np.arange(n) % 3],
            "confidence": confidence,
            "copies": 1,
            "ood_score": ood,
            "in_distribution": ood <= 1.0,
            "accepted": (confidence > 0.6) & (ood <= 1.0),
        }
    )


def png_bytes(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


@pytest.mark.parametrize("channels", [1, 3])
def test_pseudo_label_figures_render_for_gray_and_color_images(channels):
    images = np.random.default_rng(1).integers(0, 256, (60, 12, 12, channels), dtype=np.uint8)
    table = round_table()
    ood = OODDecision(table["ood_score"].to_numpy(), np.random.default_rng(2).normal(size=30), 1.0)
    figures = pseudo_label_figures(table, images, CLASSES, ood, "r1")
    assert set(figures) == {
        f"figures/{n}.png"
        for n in ("confidence", "class_counts", "accepted_grid", "ood_scores", "ood_rejects_grid")
    }
    for figure in figures.values():
        assert png_bytes(figure)[:8] == b"\x89PNG\r\n\x1a\n"


def test_without_an_ood_filter_there_are_no_ood_figures():
    images = np.zeros((60, 12, 12, 1), dtype=np.uint8)
    table = round_table().assign(ood_score=0.0, in_distribution=True)
    off = OODDecision(np.zeros(len(table)), np.zeros(0), float("inf"))
    figures = pseudo_label_figures(table, images, CLASSES, off, "r1")
    assert not any("ood" in name for name in figures)


def test_evaluation_figures_render():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(3), size=50)
    labels = rng.integers(0, 3, 50)
    confusion = np.array([[10, 2, 1], [3, 12, 2], [0, 4, 16]])
    figures = evaluation_figures(confusion, probs, labels, CLASSES, 10, "r2")
    assert set(figures) == {"r2/confusion.png", "r2/reliability.png"}
    assert all(png_bytes(f)[:4] == b"\x89PNG" for f in figures.values())
