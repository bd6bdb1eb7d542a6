"""A training loop stopped part-way and resumed from its last resume point ends with the same weights, byte
for byte, as a loop that ran through; a diverging loss stops with the epoch and step and keeps the point."""

from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.config.full import load_params
from pipeline.config.pretrain import ViewPolicy
from pipeline.data.store import Split
from pipeline.models import Architecture, build_classifier, build_encoder
from pipeline.pseudo.targets import PseudoLabeled
from pipeline.resume import ResumePoint, augmentation_state, set_augmentation_state
from pipeline.runtime import LoopSetup, TrainingDiverged, seed_everything
from pipeline.ssl.pretrain import pretrain
from pipeline.ssl.registry import NO_PRETRAINING
from pipeline.ssl.views import ssl_view
from pipeline.training.student import fit_student
from pipeline.training.teacher import fit_teacher

ROOT = Path(__file__).resolve().parents[1]
PARAMS = load_params(ROOT / "params.yaml")


class Interrupted(Exception):
    """Stands for the kill: raised from the log callback once the loop has logged step `at`."""


def stop_at(at: int | None):
    def log(metrics: dict[str, float], step: int) -> None:
        if at is not None and step >= at:
            raise Interrupted(step)

    return log


@pytest.fixture
def images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (64, 28, 28, 1), dtype=np.uint8)


def labeled_split() -> Split:
    index = np.arange(12)
    return Split(index=index, labels=index % 3, sha256=index.astype(str), paths=index.astype(str))


def classifier(arch: Architecture) -> torch.nn.Module:
    seed_everything(0)  # as a stage does first, in every run
    return build_classifier(arch)


def run_twice(train, tmp_path: Path, stop: int) -> tuple[dict, dict, list]:
    """The final state of an unbroken run, of a run interrupted at `stop` and resumed, and the steps the
    resumed run logged."""
    unbroken = train(None, stop_at(None))
    point = ResumePoint(tmp_path, "loop", key="k", every=4)
    with pytest.raises(Interrupted):
        train(point, stop_at(stop))
    assert point.load() is not None
    logged = []
    resumed = train(point, lambda metrics, step: logged.append(step))
    return unbroken, resumed, logged


def assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def every_step(point, log) -> LoopSetup:
    """The loops' setup of these tests: 28 px, seed 0, a resume point and a log entry at every step."""
    return LoopSetup(image_size=28, seed=0, log=log, resume=point, log_every=1)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["tensor", "albumentations"])
def test_teacher_resumed_after_an_interruption_matches_an_unbroken_run(images, tmp_path, backend):
    cfg = PARAMS.teacher.model_copy(
        update={
            "min_steps": 12,
            "max_steps": 12,
            "batch_size": 4,
            "encoder_lr_scale": 1.0,
            "freeze_encoder_below": 0,
            "augment_backend": backend,
        }
    )
    arch = Architecture(channels=1, width=8, depth=1, num_classes=3, dropout=0.3)

    def train(point, log):
        model = classifier(arch)
        fit_teacher(
            model=model, images=images, labeled=labeled_split(), cfg=cfg, setup=every_step(point, log)
        )
        return model.state_dict()

    unbroken, resumed, logged = run_twice(train, tmp_path, stop=6)
    assert_same_state(unbroken, resumed)
    assert logged == list(range(12))  # steps 0-3 replayed from the resume point, 4-11 trained again


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["tensor", "albumentations"])
def test_student_resumed_after_an_interruption_matches_an_unbroken_run(images, tmp_path, backend):
    strong = PARAMS.student.strong.model_copy(update={"backend": backend})
    cfg = PARAMS.student.model_copy(
        update={
            "min_steps": 12,
            "max_steps": 12,
            "batch_labeled": 4,
            "batch_unlabeled": 8,
            "width": 8,
            "dropout": 0.3,
            "strong": strong,
        }
    )
    arch = Architecture(channels=1, width=8, depth=2, num_classes=3, dropout=0.3, stochastic_depth=0.5)
    rng = np.random.default_rng(1)
    targets = rng.dirichlet(np.ones(3), 40)
    pseudo = PseudoLabeled(np.arange(24, 64), targets, rng.uniform(0, 1, 40) * (rng.uniform(size=40) > 0.3))

    def train(point, log):
        model = classifier(arch)
        data = {"images": images, "labeled": labeled_split(), "pseudo": pseudo}
        fit_student(model=model, cfg=cfg, setup=every_step(point, log), **data)
        return model.state_dict()

    unbroken, resumed, _ = run_twice(train, tmp_path, stop=9)
    assert_same_state(unbroken, resumed)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("method", "backend"),
    [(m, "albumentations") for m in PARAMS.pretrain.methods if m != NO_PRETRAINING]
    + [("vicreg", "tensor"), ("hybrid", "tensor")],
)
def test_pretrain_resumed_after_an_interruption_matches_an_unbroken_run(images, tmp_path, method, backend):
    """Every method's state comes back: MoCo's queue and pointer, momentum encoders, DINO's center, the
    masks' own generator of SimMIM and the hybrid, the hybrid's loss weights; the views' generators of
    either backend."""
    update = {"method": method, "epochs": 6, "min_steps": 1, "batch_size": 16, "views_backend": backend}
    cfg = PARAMS.pretrain.model_copy(update=update)
    arch = Architecture(channels=1, width=8, depth=1)

    def train(point, log):
        seed_everything(0)
        encoder = build_encoder(arch)
        pretrain(
            encoder=encoder,
            images=images,
            index=np.arange(64),
            cfg=cfg,
            monitor=None,
            setup=LoopSetup(image_size=28, seed=0, log=log, resume=point),
        )
        return encoder.state_dict()

    unbroken = train(None, stop_at(None))
    point = ResumePoint(tmp_path, "pretrain", key="k", every=1)
    with pytest.raises(Interrupted):
        train(point, stop_at(4))  # epoch 4 is logged before its resume point is written: resume at 3
    assert point.load()["step"] == 3
    logged = []
    assert_same_state(unbroken, train(point, lambda metrics, epoch: logged.append(epoch)))
    assert logged == [1, 2, 3, 4, 5, 6]


def test_a_resume_point_of_another_key_is_ignored(tmp_path):
    ResumePoint(tmp_path, "teacher", key="old params", every=1).save({"step": 3})
    assert ResumePoint(tmp_path, "teacher", key="old params", every=1).load()["step"] == 3
    assert ResumePoint(tmp_path, "teacher", key="new params", every=1).load() is None


def test_a_diverging_loss_names_epoch_and_step_and_keeps_the_last_resume_point(images, tmp_path):
    cfg = PARAMS.teacher.model_copy(
        update={
            "min_steps": 40,
            "max_steps": 40,
            "batch_size": 4,
            "lr": 1e6,
            "encoder_lr_scale": 1.0,
            "freeze_encoder_below": 0,
        }
    )
    point = ResumePoint(tmp_path, "teacher", key="k", every=1)
    with pytest.raises(TrainingDiverged, match=r"teacher: loss .* at epoch \d+, step (\d+)") as err:
        model = classifier(Architecture(1, 8, 1, 3))
        setup = LoopSetup(image_size=28, seed=0, log=stop_at(None), resume=point)
        fit_teacher(model=model, images=images, labeled=labeled_split(), cfg=cfg, setup=setup)
    step = int(err.value.args[0].split("step ")[1].split(";")[0])
    saved = point.load()
    assert saved["step"] == step  # the point written after the last finite step, untouched
    assert all(torch.isfinite(t).all() for t in saved["modules"]["model"].values() if t.is_floating_point())


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["tensor", "albumentations"])
def test_a_loader_worker_process_gives_the_same_training_as_augmenting_in_process(images, backend):
    """One copy of the augmentation generators draws for the batches in order, in whichever process."""
    strong = PARAMS.student.strong.model_copy(update={"backend": backend})
    arch = Architecture(channels=1, width=8, depth=2, num_classes=3, dropout=0.3, stochastic_depth=0.5)
    rng = np.random.default_rng(1)
    pseudo = PseudoLabeled(np.arange(24, 64), rng.dirichlet(np.ones(3), 40), rng.uniform(0, 1, 40))
    states = []
    for workers in (0, 1):
        cfg = PARAMS.student.model_copy(
            update={
                "min_steps": 6,
                "max_steps": 6,
                "batch_labeled": 4,
                "batch_unlabeled": 8,
                "loader_workers": workers,
                "strong": strong,
            }
        )
        model = classifier(arch)
        last = fit_student(
            model=model,
            images=images,
            labeled=labeled_split(),
            pseudo=pseudo,
            cfg=cfg,
            setup=LoopSetup(image_size=28, seed=0, log=stop_at(None), log_every=1),
        )
        states.append(model.state_dict())
        assert 0 <= last["time/data_wait_share"] <= 1
    assert_same_state(*states)


def test_the_generators_of_colour_views_are_saved_and_restored():
    """ColorJitter keeps plain functions in its `transforms`: only albumentations nodes hold generators."""
    policy = load_params(ROOT / "params.yaml").pretrain.methods["simclr"]["views"]
    view = ssl_view(ViewPolicy(**policy), 16, seed=3, channels=3)
    image = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    view(image=image)
    state = augmentation_state([view])
    first = [view(image=image)["image"] for _ in range(3)]
    set_augmentation_state(state, [view])
    assert all(np.array_equal(a, view(image=image)["image"]) for a in first)
