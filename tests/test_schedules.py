import math

import pytest
from pydantic import ValidationError

from pipeline.config.base import TrainingLength
from pipeline.schedules import linear_ramp, warmup_cosine


def test_warmup_rises_linearly_to_the_peak_in_warmup_steps():
    assert [warmup_cosine(s, 12, peak=2.0, warmup_steps=4) for s in range(4)] == [0.5, 1.0, 1.5, 2.0]


def test_cosine_decays_from_the_peak_to_the_final_value():
    # 4 warm-up steps, then 8 of cosine: step 4 + 8 * p is at progress p.
    lr = [warmup_cosine(s, 12, peak=1.0, warmup_steps=4, final=0.1) for s in (4, 6, 8, 12)]
    assert lr == pytest.approx([1.0, 0.1 + 0.45 * (1 + math.cos(math.pi / 4)), 0.55, 0.1])


def test_without_warmup_the_first_step_is_the_peak_and_past_the_end_stays_final():
    assert warmup_cosine(0, 10, peak=0.5) == 0.5
    assert warmup_cosine(5, 10, peak=0.5) == pytest.approx(0.25)
    assert warmup_cosine(10, 10, peak=0.5, final=0.01) == pytest.approx(0.01)
    assert warmup_cosine(1000, 10, peak=0.5, final=0.01) == pytest.approx(0.01)


def test_warmup_as_long_as_the_run_ends_at_the_peak_then_drops_to_final():
    """total_steps == warmup_steps leaves no steps for the cosine: no division by zero."""
    assert warmup_cosine(3, 4, peak=1.0, warmup_steps=4) == 1.0
    assert warmup_cosine(4, 4, peak=1.0, warmup_steps=4) == 1.0  # progress 0 at the first step after it
    assert warmup_cosine(5, 4, peak=1.0, warmup_steps=4, final=0.2) == pytest.approx(0.2)


def test_linear_ramp_rises_to_final_and_stays():
    assert [linear_ramp(s, 4, final=2.0) for s in (0, 1, 2, 4, 100)] == [0.0, 0.5, 1.0, 2.0, 2.0]


@pytest.mark.parametrize("ramp_steps", [0, -3])
def test_linear_ramp_of_no_steps_is_final_at_once(ramp_steps):
    assert linear_ramp(0, ramp_steps, final=0.3) == 0.3


def test_training_length_is_epochs_within_the_floor_and_the_cap():
    length = TrainingLength(epochs=5, min_steps=100, max_steps=400)
    assert length.total_steps(images=1_250, batch=224) == 100  # 28 steps of epochs: the floor
    assert length.total_steps(images=10_000, batch=224) == 224  # ceil(5 * 10 000 / 224)
    assert length.total_steps(images=20_000, batch=224) == 400  # 447: the cap
    with pytest.raises(ValidationError, match="min_steps 9 > max_steps 8"):
        TrainingLength(epochs=1, min_steps=9, max_steps=8)


def test_pretraining_runs_whole_epochs_within_the_floor_and_the_cap():
    from pipeline.config.full import load_params
    from pipeline.ssl.pretrain import pretrain_epochs

    cfg = load_params("params.yaml").pretrain.model_copy(
        update={"epochs": 12, "min_steps": 200, "max_steps": 5000}
    )
    assert pretrain_epochs(cfg, steps_per_epoch=78) == 12  # the demo: 20 040 images, batch 256
    assert pretrain_epochs(cfg, steps_per_epoch=5) == 40  # 8x8 digits: 1 297 images, the floor
    assert pretrain_epochs(cfg, steps_per_epoch=1000) == 5  # a million images: the cap
    assert pretrain_epochs(cfg.model_copy(update={"min_steps": 1}), steps_per_epoch=3) == 12
