import copy

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from pipeline.config.teacher import TeacherConfig
from pipeline.data.store import Split
from pipeline.inference import predict
from pipeline.models import Architecture, build_classifier
from pipeline.pseudo.pool import tta_probabilities
from pipeline.pseudo.select import softmax
from pipeline.runtime import LoopSetup
from pipeline.training.teacher import (
    cross_fit_folds,
    cross_fitted_choice,
    encoder_frozen,
    fit_teacher_by_cross_fitting,
    fit_teacher_by_validation,
    teacher_candidates,
)


@pytest.fixture
def model_and_images():
    torch.manual_seed(0)
    model = build_classifier(Architecture(channels=1, width=8, depth=1, num_classes=3))
    images = np.random.default_rng(0).integers(0, 256, (6, 28, 28, 1), dtype=np.uint8)
    return model, images, np.arange(6)


def test_tta_without_views_is_the_plain_softmax(model_and_images):
    model, images, index = model_and_images
    logits, _ = predict(model, images, index)
    probs = tta_probabilities(model, images, index, logits, 0.5, views=0, image_size=28, seed=0)
    assert np.array_equal(probs, softmax(logits, 0.5))


def test_tta_averages_augmented_views_repeatably(model_and_images):
    model, images, index = model_and_images
    logits, _ = predict(model, images, index)
    probs = tta_probabilities(model, images, index, logits, 1.0, views=3, image_size=28, seed=0)
    assert probs.sum(axis=1) == pytest.approx(np.ones(6))
    assert not np.allclose(probs, softmax(logits))  # the shifted views moved the prediction
    again = tta_probabilities(model, images, index, logits, 1.0, views=3, image_size=28, seed=0)
    assert np.array_equal(probs, again)


@pytest.mark.parametrize(
    ("labels", "scale", "below", "frozen"),
    [
        (40, 1.0, 10, True),  # 4 per class: linear probe
        (100, 1.0, 10, False),  # 10 per class: fine-tuned
        (99, 1.0, 10, True),
        (1000, 0.0, 10, True),  # a zero encoder lr always freezes
        (10, 1.0, 0, False),  # 0: never frozen by the label count
    ],
)
def test_the_teacher_freezes_its_encoder_only_with_few_labels_per_class(labels, scale, below, frozen):
    cfg = TeacherConfig(
        epochs=1, min_steps=1, max_steps=1, batch_size=1, lr=0.1, encoder_lr_scale=scale, select="rule",
        cross_fit_folds=0, freeze_encoder_below=below, weight_decay=0.0, dropout=0.0, candidates=["probe"],
        augment_backend="albumentations",
        scratch_lr=0.1,
    )  # fmt: skip
    assert encoder_frozen(cfg, np.arange(labels) % 10, num_classes=10) is frozen


def test_predict_in_batches_gives_the_whole_batch_outputs(model_and_images):
    model, images, index = model_and_images
    logits, features = predict(model, images, index, batch_size=4)  # batches of 4 and 2
    model.eval()
    with torch.no_grad():
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
        assert np.allclose(logits, model(x).numpy(), atol=1e-5)
        assert np.allclose(features, model.encoder(x).numpy(), atol=1e-5)
    assert logits.dtype == np.float32 and features.shape == (6, model.encoder.feature_dim)
    empty, _ = predict(model, images, index[:0])
    assert empty.shape == (0, 3)


def test_the_teacher_kept_is_the_candidate_best_on_validation():
    """Two classes told apart by brightness; a probe and a fine-tuned teacher train from the same weights and
    a scratch one from the initial weights, each logging under its own name, and the model that comes back
    scores what its mode scored."""
    rng = np.random.default_rng(0)
    labels = np.arange(40) % 2
    images = rng.integers(0, 100, (40, 12, 12, 1)).astype(np.uint8) + (labels * 120)[:, None, None, None]
    images = images.astype(np.uint8)

    def split(rows: np.ndarray) -> Split:
        return Split(
            rows, labels[rows], np.array([str(i) for i in rows]), np.array([f"{i}.png" for i in rows])
        )

    torch.manual_seed(0)
    model = build_classifier(Architecture(channels=1, width=8, depth=1, num_classes=2))
    initial = copy.deepcopy(model.state_dict())
    with torch.no_grad():  # "pretrained": weights that differ from the initial ones
        for p in model.encoder.parameters():
            p.mul_(0.5)
    cfg = TeacherConfig(
        epochs=1, min_steps=20, max_steps=20, batch_size=8, lr=0.1, encoder_lr_scale=1.0, select="validation",
        cross_fit_folds=4, freeze_encoder_below=10, weight_decay=0.0, dropout=0.0,
        augment_backend="albumentations",
        candidates=["probe", "finetune", "scratch"], scratch_lr=0.05,
    )  # fmt: skip
    logged = {}
    setup = LoopSetup(12, 0, lambda metrics, step: logged.update(metrics), log_every=1)
    mode, scores = fit_teacher_by_validation(
        model=model, images=images, labeled=split(np.arange(24)), validation=split(np.arange(24, 40)),
        cfg=cfg, setup=setup, initial=initial,
    )  # fmt: skip
    assert set(scores) == {"probe", "finetune", "scratch"} and scores[mode] == max(scores.values())
    assert {"probe/train/loss", "finetune/train/loss", "scratch/train/loss"} <= set(logged)
    logits, _ = predict(model, images, np.arange(24, 40))
    assert (logits.argmax(axis=1) == labels[24:]).mean() == scores[mode]
    with pytest.raises(ValueError, match="initial weights"):
        fit_teacher_by_validation(
            model=model, images=images, labeled=split(np.arange(24)), validation=split(np.arange(24, 40)),
            cfg=cfg, setup=setup,
        )  # fmt: skip


def test_teacher_candidates_follow_the_config():
    cfg = TeacherConfig(
        epochs=1, min_steps=1, max_steps=1, batch_size=8, lr=0.5, encoder_lr_scale=0.0, select="validation",
        cross_fit_folds=4, freeze_encoder_below=10, weight_decay=0.0, dropout=0.0,
        augment_backend="albumentations",
        candidates=["scratch", "finetune", "probe"],
        scratch_lr=0.1,
    )  # fmt: skip
    candidates = teacher_candidates(cfg)
    assert list(candidates) == ["scratch", "probe"]  # no finetune with a frozen encoder lr; the listed order
    assert candidates["scratch"].lr == 0.1 and candidates["scratch"].encoder_lr_scale == 1.0
    assert candidates["probe"].lr == 0.5
    with pytest.raises(ValidationError, match="listed twice"):
        TeacherConfig(**{**cfg.model_dump(), "candidates": ["probe", "probe"]})


def toy_split(rows: np.ndarray, labels: np.ndarray) -> Split:
    return Split(rows, labels[rows], np.array([str(i) for i in rows]), np.array([f"{i}.png" for i in rows]))


def test_cross_fitting_scores_each_labeled_image_with_models_that_never_saw_it():
    """Random images with random labels: nothing generalises, so held-out accuracy stays near chance for
    every candidate although the teacher kept fits the images it trained on; a score computed on training
    images would be near 1. The fold models and the final one log under their own names."""
    rng = np.random.default_rng(0)
    labels = np.arange(32) % 2
    rng.shuffle(labels)
    images = rng.integers(0, 256, (32, 12, 12, 1), dtype=np.uint8)
    torch.manual_seed(0)
    model = build_classifier(Architecture(channels=1, width=8, depth=1, num_classes=2))
    initial = copy.deepcopy(model.state_dict())
    cfg = TeacherConfig(
        epochs=1, min_steps=300, max_steps=300, batch_size=8, lr=0.05, encoder_lr_scale=1.0,
        select="validation", cross_fit_folds=4, freeze_encoder_below=10, weight_decay=0.0, dropout=0.0,
        augment_backend="albumentations",
        candidates=["probe", "finetune", "scratch"], scratch_lr=0.05,
    )  # fmt: skip
    logged = {}
    setup = LoopSetup(12, 0, lambda metrics, step: logged.update(metrics), log_every=1)
    mode, scores = fit_teacher_by_cross_fitting(
        model=model, images=images, labeled=toy_split(np.arange(32), labels), folds=4, cfg=cfg, setup=setup,
        initial=initial,
    )  # fmt: skip
    assert set(scores) == {"probe", "finetune", "scratch"} and mode in scores
    assert max(scores.values()) <= 0.75  # chance is 0.5 on 32 held-out predictions
    logits, _ = predict(model, images, np.arange(32))
    assert (logits.argmax(axis=1) == labels).mean() >= 0.9  # it memorised its training images
    assert {f"fold{f}/{m}/train/loss" for f in range(4) for m in scores} <= set(logged)
    assert f"{mode}/train/loss" in logged


@pytest.mark.parametrize(
    ("per_class", "asked", "folds"), [([4, 4, 4], 4, 4), ([4, 2, 6], 4, 2), ([4, 1, 6], 4, 0), ([9, 9], 0, 0)]
)
def test_cross_fitting_folds_never_exceed_the_rarest_class(per_class, asked, folds):
    cfg = TeacherConfig(
        epochs=1, min_steps=1, max_steps=1, batch_size=8, lr=0.1, encoder_lr_scale=1.0, select="validation",
        cross_fit_folds=asked, freeze_encoder_below=10, weight_decay=0.0, dropout=0.0, candidates=["probe"],
        augment_backend="albumentations",
        scratch_lr=0.1,
    )  # fmt: skip
    labels = np.concatenate([np.full(n, c) for c, n in enumerate(per_class)])
    assert cross_fit_folds(cfg, labels) == folds


def test_cross_fitting_keeps_the_rules_teacher_unless_another_is_clearly_better():
    """40 held-out predictions. 4 won and 2 lost against the default: mean difference 0.05, standard error
    sqrt((6 - 40 * 0.05**2) / 39 / 40) = 0.0615, so 0.05 < 1.645 * 0.0615 and the default stays. 16 won and
    none lost: 0.4 against 1.645 * sqrt((16 - 40 * 0.4**2) / 39 / 40) = 0.129, so the better one is kept."""
    probe = np.r_[np.ones(22), np.zeros(18)].astype(int)
    close = probe.copy()
    close[[22, 23, 24, 25]], close[[0, 1]] = 1, 0  # 24 right: better, within the noise
    clear = probe.copy()
    clear[22:38] = 1  # 38 right
    assert cross_fitted_choice({"probe": probe, "finetune": close}, default="probe") == "probe"
    assert cross_fitted_choice({"probe": probe, "scratch": clear}, default="probe") == "scratch"
    assert cross_fitted_choice({"probe": probe, "finetune": close}, default="finetune") == "finetune"
    assert cross_fitted_choice({"probe": probe, "finetune": close}, default="scratch") == "finetune"
