import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.config.base import ConfigError
from pipeline.config.base import load_params as load_sections
from pipeline.config.common import Common
from pipeline.config.full import load_params
from pipeline.ssl.registry import check_methods

ROOT = Path(__file__).resolve().parents[1]


def write_params(tmp_path: Path, **changes) -> Path:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node = params
        for key in parents:
            node = node[key]
        node[last] = value
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def test_project_params_are_valid():
    params = load_params(ROOT / "params.yaml")
    assert params.round_order()[0] == "r0"
    assert params.round_order() == ["r0", *sorted(params.rounds)]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"pseudolabel__threshold": 1.5}, "pseudolabel.threshold"),
        ({"pretrain__epochs": -1}, "pretrain.epochs"),
        ({"student__dropuot": 0.1}, "student.dropuot"),
        ({"rounds": {"r1": {"prev": "r0"}, "r2": {"prev": "r9"}}}, "rounds.r2.prev: 'r9' is not a round"),
        ({"rounds": {"r1": {"prev": "r2"}, "r2": {"prev": "r1"}}}, "loops"),
        ({"model__width": 4}, "model.width: Input should be greater than or equal to 8"),
        ({"studnet": {}}, "studnet: not a section"),
        ({"model__backbone": "vgg16"}, "model.backbone: Input should be 'small_resnet', 'wrn_28_2'"),
        (
            {"model__backbone": "resnet18", "model__weights": "r18.pth"},
            "model.weights: r18.pth is not under paths.weights (weights), the folder DVC watches",
        ),
        (
            {"teacher__min_steps": 10, "teacher__max_steps": 5},
            "teacher: Value error, min_steps 10 > max_steps 5",
        ),
        (
            {"model__backbone": "resnet18", "student__backbone": "wrn_28_2"},
            "student.backbone wrn_28_2 is smaller than model.backbone resnet18",
        ),
        (
            {"student__backbone": "resnet18"},
            "student.init=previous copies the weights of model's small_resnet",
        ),
    ],
)
def test_invalid_params_name_the_key(tmp_path, change, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_params(write_params(tmp_path, **change))


def test_round_overrides_are_merged_and_validated(tmp_path):
    rounds = {
        "r1": {"prev": "r0"},
        "r2": {"prev": "r1", "pseudolabel": {"threshold": 0.9}, "student": {"min_steps": 5, "max_steps": 7}},
    }
    params = load_params(write_params(tmp_path, rounds=rounds))
    pl1, st1 = params.round_config("r1")
    pl2, st2 = params.round_config("r2")
    assert (pl1.threshold, pl2.threshold) == (params.pseudolabel.threshold, 0.9)
    assert (st2.min_steps, st2.max_steps, st2.dropout) == (5, 7, params.student.dropout)
    bad = load_params(write_params(tmp_path, rounds={"r1": {"prev": "r0", "student": {"dropout": 2}}}))
    with pytest.raises(ConfigError, match=r"rounds\.r1\.student\.dropout"):
        bad.round_config("r1")
    with pytest.raises(ConfigError, match="round 'r7' is not in params.yaml"):
        params.round_config("r7")


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="params file not found"):
        load_params(tmp_path / "nope.yaml")


def test_ssl_methods_are_validated_by_their_own_module(tmp_path):
    params = load_params(write_params(tmp_path, pretrain__method="magic"))
    with pytest.raises(ConfigError, match="pretrain.method: 'magic' is not one of simclr"):
        check_methods(params.pretrain)
    params = load_params(write_params(tmp_path, pretrain__methods__simclr__temperature=-1))
    with pytest.raises(ConfigError, match=r"pretrain\.methods\.simclr\.temperature"):
        check_methods(params.pretrain)


def test_the_student_may_not_be_smaller_than_the_teacher(tmp_path):
    with pytest.raises(ConfigError, match="student.width/depth must be >="):
        load_params(write_params(tmp_path, model__width=32))


STAGE_CASES = [  # (stage, a bad key of a section it reads)
    ("prepare", {"data__channels": 2}, "data.channels: Input should be 1 or 3"),
    ("pretrain", {"pretrain__methods__vicreg__lr_scale": -1}, "pretrain.methods.vicreg.lr_scale"),
    ("student", {"student__dropout": 1.5}, "student.dropout: Input should be less than 1"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("stage", "change", "message"), STAGE_CASES)
def test_a_stage_with_bad_params_exits_naming_the_key_and_writes_nothing(tmp_path, stage, change, message):
    write_params(tmp_path, **change)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    args = ["--round", "r1"] if stage == "student" else []
    proc = subprocess.run(
        [sys.executable, str(ROOT / "stages" / f"{stage}.py"), *args],
        cwd=tmp_path, env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode != 0
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr  # a message, not a crash
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]  # no output, no mlflow.db


@pytest.mark.slow
def test_a_stage_reads_only_its_sections_and_check_validates_them_all(tmp_path):
    """prepare does not read the student's section, so a bad student key does not stop it; `python -m
    pipeline check` (run by `make repro` before `dvc repro`) names it."""
    write_params(tmp_path, student__dropout=1.5)
    params = load_sections(tmp_path / "params.yaml", Common)
    assert params.data.image_size == 28
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", "check", "--params", str(tmp_path / "params.yaml")],
        cwd=tmp_path, env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode != 0 and "student.dropout: Input should be less than 1" in proc.stderr
