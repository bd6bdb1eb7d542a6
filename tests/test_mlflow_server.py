"""The pipeline against a real `mlflow server` on 127.0.0.1, and a stage against one that is not there."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from pipeline_repo import ROOT, free_port, make_repo, mlflow_server, run, stop

pytestmark = pytest.mark.slow  # an mlflow server or a stage process per test


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`mlflow server` with a SQLite backend and proxied artifacts, on a free port; stopped afterwards."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    proc = mlflow_server(root, port)
    yield f"http://127.0.0.1:{port}", root
    stop(proc)


@pytest.mark.e2e
@pytest.mark.timeout(900)  # about 2.5 min here, the server's start included
def test_pipeline_logs_runs_models_and_artifacts_to_a_tracking_server(server, tmp_path):
    uri, server_root = server
    repo = tmp_path / "repo"
    env = make_repo(repo, {"mlflow": {"experiment": "over-http"}}, {"MLFLOW_TRACKING_URI": uri})
    run(["dvc", "repro"], repo, env)
    assert not (repo / "mlflow.db").exists()  # everything went to the server

    from mlflow import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("over-http")
    runs = client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])
    names = sorted(r.info.run_name for r in runs if r.data.tags.get("kind") == "stage")
    assert names == [
        "00 prepare",
        "01 pretrain",
        "02 r0/teacher",
        "03 r1/pseudolabel",
        "04 r1/student",
        "05 evaluate",
    ]
    by_name = {r.info.run_name: r for r in runs}

    pseudo = by_name["03 r1/pseudolabel"].info.run_id
    png = Path(client.download_artifacts(pseudo, "figures/confidence.png", str(tmp_path)))
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert list((server_root / "artifacts").rglob("confidence.png"))  # stored by the server, not the client

    version = client.get_model_version_by_alias("pseudo-labeling-classifier", "final")
    dvc_md5 = yaml.safe_load((repo / "data/unlabeled.dvc").read_text())["outs"][0]["md5"]
    assert version.tags["round"] == "r1" and version.tags["data_hash.unlabeled"] == dvc_md5
    assert (
        version.tags["run_id"] == by_name["05 evaluate"].info.run_id
    )  # evaluate registers the promoted round

    out = tmp_path / "predictions.csv"
    model = "pseudo-labeling-classifier@final"
    run(
        [sys.executable, "-m", "pipeline", "predict", "data/test", "--model", model, "--out", str(out)],
        repo,
        env,
    )
    assert len(pd.read_csv(out)) == 100


def test_stage_fails_fast_naming_an_unreachable_tracking_server():
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    env.update(MLFLOW_TRACKING_URI=uri, NO_ALBUMENTATIONS_UPDATE="1")
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "stages/teacher.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode != 0 and time.monotonic() - start < 20
    assert f"MLflow tracking server {uri} is unreachable" in proc.stderr
    assert "Traceback" not in proc.stderr
