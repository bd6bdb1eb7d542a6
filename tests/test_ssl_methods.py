"""Every SSL method trains a few steps on the fixture without NaN, and the method parts behave."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.config.full import load_params
from pipeline.data.prepare import prepare
from pipeline.data.store import load_prepared
from pipeline.models import Architecture, build_encoder
from pipeline.runtime import LoopSetup, seed_everything
from pipeline.ssl.methods.base import cosine_momentum, ema_update
from pipeline.ssl.pretrain import (
    CollapseError,
    KnnMonitor,
    check_collapse,
    collapse_reason,
    pretrain,
    pretraining_warnings,
)
from pipeline.ssl.registry import METHODS

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = Path(__file__).parent / "fixtures" / "data"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    out = tmp_path_factory.mktemp("store")
    roots = {s: FIXTURE / s for s in ("labeled", "unlabeled", "test")}
    prepare(roots, out, image_size=28, channels=1, progress=False)
    return load_prepared(out)


@pytest.mark.slow  # 1-8 s a method on 2 busy cores
@pytest.mark.parametrize("method", list(METHODS))
def test_method_trains_without_nan_and_moves_the_encoder(store, method):
    params = load_params(ROOT / "params.yaml")
    cfg = params.pretrain.model_copy(update={"method": method, "epochs": 2, "min_steps": 1, "batch_size": 32})
    seed_everything(0)
    encoder = build_encoder(Architecture(1, 8, 1), store.stats["mean"], store.stats["std"])
    before = [p.detach().clone() for p in encoder.parameters()]
    labeled, test = store.split("labeled"), store.split("test")
    monitor = KnnMonitor(labeled.index, labeled.labels, test.index, test.labels, k=5)
    index = np.concatenate([labeled.index, store.split("unlabeled").index])
    logged = []
    setup = LoopSetup(image_size=28, seed=0, log=lambda m, s: logged.append((s, m)))
    epochs = pretrain(
        encoder=encoder, images=store.images, index=index, cfg=cfg, monitor=monitor, setup=setup
    )
    summary = epochs[-1][0]
    assert [s for s, _ in logged] == [0, 1, 2]  # epoch 0: the encoder at initialisation
    assert all(math.isfinite(v) for v in summary.values())
    # 10 classes: chance is 10 % of the 100 test images; a collapsed encoder (all features alike) votes one
    # class, at most 15 %. Measured 2026-12 after the 2 epochs, AVX-512 and AVX2 kernels: 29-40 % for the
    # ten methods; an untrained encoder gets 24 %, so this catches collapse and NaN, not a lack of learning.
    assert summary["knn/accuracy"] >= 0.2 and summary["ssl/effective_rank"] >= 1
    assert any(not torch.equal(a, b) for a, b in zip(before, encoder.parameters(), strict=True))
    if method == "hybrid":
        assert {"ssl/loss_reconstruction", "ssl/loss_contrastive", "ssl/weight_contrastive"} <= set(summary)


@pytest.mark.parametrize("method", ["vicreg", "simmim"])
def test_batched_views_train_the_encoder_and_repeat_with_the_seed(store, method):
    """`views_backend: tensor` makes the views of whole batches in the loop: the run learns, and the same
    seed gives the same encoder."""
    params = load_params(ROOT / "params.yaml")
    update = {"method": method, "epochs": 2, "min_steps": 1, "batch_size": 32, "views_backend": "tensor"}
    cfg = params.pretrain.model_copy(update=update)
    index = np.concatenate([store.split("labeled").index, store.split("unlabeled").index])

    def run() -> list[torch.Tensor]:
        seed_everything(0)
        encoder = build_encoder(Architecture(1, 8, 1), store.stats["mean"], store.stats["std"])
        rows = pretrain(encoder=encoder, images=store.images, index=index, cfg=cfg, monitor=None,
                        setup=LoopSetup(image_size=28, seed=0, log=lambda m, s: None))  # fmt: skip
        assert len(rows) == 2 and all(math.isfinite(v) for v in rows[-1][0].values())
        return [p.detach().clone() for p in encoder.parameters()]

    first, again = run(), run()
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    seed_everything(0)
    initial = build_encoder(Architecture(1, 8, 1), store.stats["mean"], store.stats["std"])
    assert any(not torch.equal(a, b) for a, b in zip(first, initial.parameters(), strict=True))


def test_ema_update_and_momentum_schedule():
    target, online = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    with torch.no_grad():
        target.weight.fill_(1.0)
        online.weight.fill_(3.0)
    ema_update(target, online, momentum=0.75)
    assert target.weight.tolist() == [[1.5, 1.5]]  # 0.75 * 1 + 0.25 * 3
    assert cosine_momentum(0.99, 0, 100) == pytest.approx(0.99)
    assert cosine_momentum(0.99, 100, 100) == pytest.approx(1.0)


def test_collapse_is_detected_with_a_clear_message():
    assert collapse_reason({"ssl/std_ratio": 0.6, "ssl/effective_rank": 20.0}) is None
    assert "std ratio 0.0010 < 0.0500" in collapse_reason(
        {"ssl/std_ratio": 0.001, "ssl/effective_rank": 20.0}
    )
    assert "effective rank 1.10" in collapse_reason({"ssl/std_ratio": 0.6, "ssl/effective_rank": 1.1})


def test_an_encoder_as_narrow_as_at_initialisation_has_not_collapsed_but_a_real_collapse_still_stops():
    """8x8 digits at random initialisation: every image maps to nearly one direction (std ratio 0.027), which
    is where training starts, not a collapse."""
    initial = {"ssl/std_ratio": 0.027, "ssl/effective_rank": 3.0}
    assert collapse_reason({"ssl/std_ratio": 0.03, "ssl/effective_rank": 3.5}, initial) is None
    assert "std ratio 0.0020 < 0.0135" in collapse_reason({"ssl/std_ratio": 0.002, "ssl/effective_rank": 3.5},
                                                          initial)  # fmt: skip
    spread = {"ssl/std_ratio": 0.8, "ssl/effective_rank": 20.0}  # a well-spread start: the floor holds
    assert "std ratio 0.0400 < 0.0500" in collapse_reason(
        {"ssl/std_ratio": 0.04, "ssl/effective_rank": 9.0}, spread
    )


def test_a_dip_after_the_warm_up_that_recovers_is_no_collapse_but_one_that_stays_is():
    dip = "std ratio 0.0266 < 0.0286"
    check_collapse([None, dip], epoch=2, last=False)
    check_collapse([None, dip, None], epoch=3, last=False)  # spread again: training goes on
    with pytest.raises(CollapseError, match="collapsed at epoch 4: std ratio"):
        check_collapse([None, dip, None, dip, dip], epoch=4, last=False)
    with pytest.raises(CollapseError, match="collapsed at epoch 2"):  # no epoch left to recover in
        check_collapse([None, dip], epoch=2, last=True)


def test_pretraining_that_learned_nothing_about_the_classes_is_warned_about():
    def rows(initial, final):
        return [({"knn/accuracy": initial}, 0), ({"knn/accuracy": final}, 1)]

    colour_at_chance = pretraining_warnings(rows(0.14, 0.095), num_classes=10)
    assert len(colour_at_chance) == 2
    assert "at chance (10.0% with 10)" in colour_at_chance[0] and "fell from 14.0%" in colour_at_chance[1]
    (fell,) = pretraining_warnings(rows(0.30, 0.25), num_classes=10)
    assert "fell from 30.0% at initialisation to 25.0%" in fell
    assert pretraining_warnings(rows(0.24, 0.70), num_classes=10) == []
    assert (
        pretraining_warnings([({"train/loss": 1.0}, 1)], num_classes=10) == []
    )  # no monitor: nothing to say
