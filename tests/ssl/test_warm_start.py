"""pretrain.warm_start: the encoder continues from the last run's, in the library and through DVC."""

import json
import sqlite3
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.checkpoint import save_model
from pipeline.config.full import load_params
from pipeline.models import Architecture, build_encoder
from pipeline.ssl.pretrain import warm_start

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
from pipeline_repo import make_repo, run  # noqa: E402

ARCH = Architecture(channels=1, width=8, depth=1)


def cfg(**update):
    return load_params(ROOT / "params.yaml").pretrain.model_copy(update=update)


def saved_encoder(path: Path, arch: Architecture = ARCH) -> torch.nn.Module:
    torch.manual_seed(1)
    encoder = build_encoder(arch, [0.2], [0.3])
    save_model(path, encoder, arch, config={})
    return encoder


def test_a_warm_start_loads_the_previous_weights_keeps_this_runs_normalization_and_trains_briefly(tmp_path):
    previous = saved_encoder(tmp_path / "encoder.pt")
    torch.manual_seed(2)
    encoder = build_encoder(ARCH, [0.5], [0.25])
    short, how = warm_start(
        encoder, ARCH, cfg(warm_start=True, warm_start_epochs=2, epochs=12), tmp_path / "encoder.pt"
    )
    assert "warm start" in how and (short.epochs, short.min_steps) == (2, 1)
    for (name, a), b in zip(encoder.state_dict().items(), previous.state_dict().values(), strict=True):
        if name in ("mean", "std"):
            assert not torch.equal(a, b)  # this run's channel statistics
        else:
            assert torch.equal(a, b)


@pytest.mark.parametrize("case", ["off", "no file", "other architecture"])
def test_without_a_usable_previous_encoder_it_trains_from_scratch(tmp_path, case):
    path = tmp_path / "encoder.pt"
    if case != "no file":
        saved_encoder(path, ARCH if case == "off" else Architecture(channels=1, width=16, depth=1))
    torch.manual_seed(2)
    encoder = build_encoder(ARCH)
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    asked = cfg(warm_start=case != "off", epochs=12)
    used, how = warm_start(encoder, ARCH, asked, path)
    assert used == asked and how.startswith("from scratch")
    assert all(torch.equal(before[k], v) for k, v in encoder.state_dict().items())
    if case == "other architecture":
        assert "another architecture" in how


def pretrain_runs(repo: Path) -> list[tuple[str, str]]:
    """(start tag, epochs param) of every pretrain MLflow run, oldest first."""
    with sqlite3.connect(repo / "mlflow.db") as db:
        return db.execute(
            "SELECT t.value, p.value FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid AND t.key = 'start' "
            "JOIN params p ON p.run_uuid = r.run_uuid AND p.key = 'pretrain.epochs' "
            "WHERE r.name LIKE '% pretrain' ORDER BY r.start_time"
        ).fetchall()


@pytest.mark.slow
def test_new_images_rerun_pretrain_as_a_warm_start_from_the_persisted_encoder(tmp_path):
    repo = tmp_path / "repo"
    env = make_repo(repo, {"pretrain": {"warm_start": True, "warm_start_epochs": 1, "epochs": 3}})
    run(["dvc", "repro", "pretrain"], repo, env)
    first = (repo / "models/ssl/encoder.pt").read_bytes()
    new = repo / "data/unlabeled/shard_000/new_image.png"
    pixels = np.asarray(Image.open(repo / "data/unlabeled/shard_000/train_00881.png")).copy()
    pixels[0, 0] = 255 - pixels[0, 0]  # other bytes: a new image
    Image.fromarray(pixels).save(new)
    run(["dvc", "add", "-q", "data/unlabeled"], repo, env)
    run(["dvc", "repro", "pretrain"], repo, env)
    runs = pretrain_runs(repo)
    assert [how.split(":")[0] for how, _ in runs] == ["from scratch", "warm start from models/ssl/encoder.pt"]
    assert [float(epochs) for _, epochs in runs] == [3, 1]
    assert (repo / "models/ssl/encoder.pt").read_bytes() != first  # trained on from the persisted one
    assert json.loads((repo / "metrics/pretrain.json").read_text())  # the short run's last epoch
