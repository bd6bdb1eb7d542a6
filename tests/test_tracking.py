"""pipeline.tracking with real files, a real HTTP listener and a real MLflow store (SQLite in tmp_path)."""

import http.server
import os
import socket
import threading
import time
from pathlib import Path

import pytest
import torch

from pipeline.config.full import load_params
from pipeline.provenance import dvc_data_hash, git_commit
from pipeline.tracking import (
    TrackingUnreachable,
    check_tracking_uri,
    flatten,
    latest_round_runs,
    pipeline_id,
    run_name,
    stage_run,
    tracking_uri,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def params():
    params = load_params(ROOT / "params.yaml")
    assert params.round_order() == ["r0", "r1", "r2", "r3"]  # what the expected names below assume
    return params


def test_run_names_sort_in_pipeline_order(params):
    calls = [
        ("evaluate", None),
        ("student", "r3"),
        ("prepare", None),
        ("pseudolabel", "r1"),
        ("teacher", "r0"),
    ]
    names = [run_name(params, stage, round_name) for stage, round_name in calls]
    assert names == ["09 evaluate", "08 r3/student", "00 prepare", "03 r1/pseudolabel", "02 r0/teacher"]
    assert sorted(names) == [
        "00 prepare",
        "02 r0/teacher",
        "03 r1/pseudolabel",
        "08 r3/student",
        "09 evaluate",
    ]
    assert run_name(params, "student", "r9") == "r9/student"  # not a round of these params: no position


def test_dvc_data_hash_reads_the_md5_of_the_folders_dvc_file(tmp_path):
    (tmp_path / "labeled.dvc").write_text("outs:\n- md5: 3f2a.dir\n  size: 12\n  path: labeled\n")
    assert dvc_data_hash(tmp_path / "labeled") == "3f2a.dir"
    assert dvc_data_hash(f"{tmp_path / 'labeled'}/") == "3f2a.dir"  # a trailing slash names the same folder
    assert dvc_data_hash(tmp_path / "test") == "untracked"  # no test.dvc
    (tmp_path / "empty.dvc").write_text("")
    (tmp_path / "no_md5.dvc").write_text("outs:\n- path: no_md5\n")
    assert (
        dvc_data_hash(tmp_path / "empty") == "untracked" and dvc_data_hash(tmp_path / "no_md5") == "untracked"
    )


def test_flatten_joins_nested_keys_with_dots():
    nested = {"seed": 0, "teacher": {"lr": 0.5, "ood": {"k": 1, "folds": [1, 2]}}, "none": {}}
    assert flatten(nested) == {"seed": 0, "teacher.lr": 0.5, "teacher.ood.k": 1, "teacher.ood.folds": [1, 2]}
    assert flatten({"a": {"b": 1}}, prefix="x.") == {"x.a.b": 1}


def test_tracking_uri_is_the_repositorys_sqlite_file_unless_the_environment_names_one(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking_uri(tmp_path) == f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking:5000")
    assert tracking_uri(tmp_path) == "http://tracking:5000"


def test_pipeline_id_comes_from_the_environment_or_is_unique_outside_dvc(monkeypatch):
    monkeypatch.setenv("PIPELINE_ID", "run-7")
    assert pipeline_id() == "run-7"
    monkeypatch.delenv("PIPELINE_ID")
    first, second = pipeline_id(), pipeline_id()  # pytest is not started by `dvc`
    assert first.startswith("standalone-") and first != second


def closed_port() -> int:
    """A port nothing listens on: bound by the system, then released."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_tracking_server_is_an_error_naming_the_uri():
    uri = f"http://127.0.0.1:{closed_port()}"
    start = time.monotonic()
    with pytest.raises(TrackingUnreachable, match=f"MLflow tracking server {uri} is unreachable"):
        check_tracking_uri(uri, timeout=2.0)
    assert time.monotonic() - start < 2.0  # refused at once, not after MLflow's minutes of retries


def test_a_server_answering_health_and_a_local_store_pass():
    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/health" else 404)
            self.end_headers()
            self.wfile.write(b"OK")

        def log_message(self, *args):
            pass  # no request lines in the test output

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)  # polls for shutdown
    thread.start()
    try:
        check_tracking_uri(f"http://127.0.0.1:{server.server_address[1]}/")
    finally:
        server.shutdown()
        server.server_close()
    check_tracking_uri("sqlite:///nowhere/mlflow.db")  # not a server: nothing to check


@pytest.mark.slow  # importing MLflow and creating its SQLite schema: about 3.5 s
def test_stage_runs_of_one_pipeline_share_a_parent_and_carry_their_tags(params, tmp_path, monkeypatch):
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.chdir(tmp_path)  # the project root: data/*.dvc are read relative to it
    for name in ("DVC_ROOT", "DVC_STAGE", "DVC_EXP_NAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("PIPELINE_ID", "repro-1")
    # stage_run sets mlflow's process-wide URI (a module global): monkeypatch puts the previous one back
    monkeypatch.setattr("mlflow.tracking._tracking_service.utils._tracking_uri", None)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "labeled.dvc").write_text("outs:\n- md5: abc.dir\n  path: labeled\n")

    with stage_run(params, "prepare", logged={"data": {"image_size": 28}, "seed": 0}) as prepare:
        prepare.log({"prepare/images": 5}, step=0)
    monkeypatch.setenv("DVC_STAGE", "student@r1")
    with stage_run(params, "student", "r1") as student:
        pass

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(params.mlflow.experiment)
    assert exp.artifact_location == (tmp_path / "mlartifacts").as_uri()  # beside the database
    (parent,) = client.search_runs([exp.experiment_id], "tags.kind = 'pipeline'")
    assert parent.data.tags["pipeline_id"] == "repro-1"
    children = client.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    by_name = {run.info.run_name: run for run in children}
    assert sorted(by_name) == ["00 prepare", "04 r1/student"]
    assert by_name["00 prepare"].info.run_id == prepare.run_id
    for run, stage, dvc_stage, round_name in [
        (by_name["00 prepare"], "prepare", "prepare", ""),
        (by_name["04 r1/student"], "student", "student@r1", "r1"),
    ]:
        tags = run.data.tags
        assert (tags["stage"], tags["dvc_stage"], tags["round"], tags["kind"]) == (
            stage, dvc_stage, round_name, "stage",
        )  # fmt: skip
        assert tags["data_hash.labeled"] == "abc.dir" and tags["data_hash.unlabeled"] == "untracked"
        assert tags["git_commit"] == "unknown" and run.info.status == "FINISHED"  # tmp_path: not a git repo
        assert tags["cpu_capability"] == torch.backends.cpu.get_cpu_capability() != ""
        assert tags["env.ONEDNN_MAX_CPU_ISA"] == os.environ.get("ONEDNN_MAX_CPU_ISA", "")
    assert by_name["00 prepare"].data.params == {"data.image_size": "28", "seed": "0"}
    assert by_name["00 prepare"].data.metrics == {"prepare/images": 5.0}
    assert student.tags["round"] == "r1"
    assert latest_round_runs(params.mlflow.experiment) == {"r1": student.run_id}  # model stages only
    assert len(git_commit(ROOT)) == 40
