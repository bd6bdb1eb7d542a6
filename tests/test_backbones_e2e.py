"""Every backbone through the whole pipeline on the fixture: pretrain with SimMIM and with a second method,
the teacher chosen by cross-fitting, a round, evaluate, the registered model and `predict`. Tiny step
counts, small images; colour images of another size than 28 on half of the backbones."""

import json
import os
import runpy
import sys
from unittest.mock import patch

import pandas as pd
import pytest
import torch
import yaml
from pipeline_repo import make_repo, run

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(900)]

STAGES = [["teacher"], ["pseudolabel", "--round", "r1"], ["student", "--round", "r1"], ["evaluate"]]


def tiny(backbone: str, method: str, channels: int, size: int) -> dict:
    return {
        "data": {"channels": channels, "image_size": size},
        "model": {"backbone": backbone},
        "pretrain": {"method": method, "epochs": 1, "min_steps": 1, "batch_size": 32, "knn_test_images": 20},
        "teacher": {"min_steps": 4, "max_steps": 4, "batch_size": 8, "cross_fit_folds": 4},  # TINY: 0
        "pseudolabel": {"threshold": 0.0},
        "student": {"min_steps": 3, "max_steps": 3, "batch_labeled": 4, "batch_unlabeled": 8},
    }


def run_stage(name: str, *args: str) -> None:
    """`python stages/<name>.py <args>`, in this process."""
    with patch.object(sys, "argv", [f"stages/{name}.py", *args]):
        runpy.run_path(f"stages/{name}.py", run_name="__main__")


def set_method(repo, method: str) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["pretrain"]["method"] = method
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.mark.parametrize(
    ("backbone", "channels", "size", "second"),
    [("small_resnet", 3, 20, "byol"), ("wrn_28_2", 3, 16, "simclr"), ("resnet18", 1, 16, "dino"),
     ("resnet34", 3, 12, "swav"), ("resnet50", 1, 12, "hybrid")],
)  # fmt: skip
def test_the_pipeline_runs_with_every_backbone(
    tmp_path, monkeypatch, capsys, backbone, channels, size, second
):
    repo = tmp_path / "repo"
    env = make_repo(repo, tiny(backbone, second, channels, size))
    monkeypatch.chdir(repo)  # the stages run in this process: one start-up instead of eight
    for key in [k for k in os.environ if k not in env]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    run_stage("prepare")
    run_stage("pretrain")  # the second method, then SimMIM for the rest
    assert json.loads((repo / "metrics/pretrain.json").read_text())["knn/accuracy"] >= 0
    set_method(repo, "simmim")
    run_stage("pretrain")
    capsys.readouterr()
    for stage, *args in STAGES:
        run_stage(stage, *args)
        if stage == "teacher":  # 3 labeled images per class, no validation set: 3 folds
            assert "kept (cross-fitting: probe " in capsys.readouterr().out
    ckpt = torch.load(repo / "models/rounds/r1/model.pt", weights_only=False)
    assert (ckpt["arch"]["backbone"], ckpt["arch"]["channels"]) == (backbone, channels)
    results = json.loads((repo / "metrics/eval.json").read_text())
    assert {"r0", "r1"} <= set(results) and 0.0 <= results["r1"]["test/accuracy"] <= 1.0
    out = tmp_path / "predictions.csv"
    model = "pseudo-labeling-classifier@final"
    predict = [sys.executable, "-m", "pipeline", "predict", "data/test", "--model", model, "--out", str(out)]
    printed = run(predict, repo, env)
    assert "100 images labeled, 0 unreadable" in printed
    predictions = pd.read_csv(out)
    accuracy = (predictions["label"] == predictions["path"].str.split("/").str[0]).mean()
    assert accuracy == pytest.approx(results["r1"]["test/accuracy"], abs=0.011)
