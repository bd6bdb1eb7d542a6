"""A real `mlflow server` killed in the middle of a training stage (issue: reliability). Back within
`mlflow.server_wait_s`: the stage trained on, and its run ends FINISHED with every metric. Down for good: the
stage stops naming the URI, its resume point kept, and the next run resumes and ends the dead run FAILED."""

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pipeline_repo import free_port, make_repo, mlflow_server, run, stop

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

TEACHER = {
    "teacher": {"min_steps": 300, "max_steps": 300, "batch_size": 16},
    "checkpoints": {"every_steps": 25},
}


def teacher_runs(client) -> list:
    exp = client.get_experiment_by_name("pseudo-labeling")
    if exp is None:  # the stage has not created it yet
        return []
    order = ["attributes.start_time"]
    return client.search_runs([exp.experiment_id], "tags.stage = 'teacher'", order_by=order)


def wait_for_metrics(client, proc: subprocess.Popen, timeout: float = 300) -> None:
    """Return once the running teacher has sent a training metric (mid-training, the process alive)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the stage ended before the server could be killed"
        runs = teacher_runs(client)
        if runs and any(key.startswith("train/") for key in runs[-1].data.metrics):
            return
        time.sleep(0.2)
    raise TimeoutError("the teacher logged no training metric")


def start_teacher(repo: Path, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "stages/teacher.py"], cwd=repo, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """The fixture repo up to the teacher's inputs (logged to its local mlflow.db), built once."""
    repo = tmp_path_factory.mktemp("outage") / "repo"
    env = make_repo(repo, {**TEACHER, "mlflow": {"server_wait_s": 4}})
    run(["dvc", "repro", "pretrain"], repo, env)
    return repo, env


@pytest.fixture
def outage(prepared, tmp_path):
    """A copy of the prepared repo logging to a fresh real server; yields what a test needs."""
    from mlflow import MlflowClient

    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    server_root = tmp_path / "server"
    server_root.mkdir()
    server = [mlflow_server(server_root, port)]
    repo = tmp_path / "repo"
    shutil.copytree(prepared[0], repo, symlinks=True)
    env = {**prepared[1], "PYTHONPATH": str(repo), "MLFLOW_TRACKING_URI": uri}
    yield repo, env, MlflowClient(uri), server, lambda: mlflow_server(server_root, port)
    stop(server[-1])


def test_a_server_back_within_the_wait_gets_every_metric_and_the_run_ends_finished(outage):
    repo, env, client, server, restart = outage
    params = repo / "params.yaml"
    params.write_text(params.read_text().replace("server_wait_s: 4", "server_wait_s: 300"))
    proc = start_teacher(repo, env)
    wait_for_metrics(client, proc)
    stop(server[0], signal.SIGKILL)
    time.sleep(6)
    assert proc.poll() is None  # trains on without the server
    server.append(restart())
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    assert "does not answer" in err and "answers again" in err and "Traceback" not in err
    (teacher,) = teacher_runs(client)
    assert teacher.info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(teacher.info.run_id, "train/loss")]
    assert steps == [*range(0, 300, 25), 299]  # every 25 steps and the last: none lost while it was down
    assert (repo / "models/rounds/r0/model.pt").is_file()


def test_a_server_down_for_good_stops_the_stage_resumably_and_the_next_run_ends_the_dead_one_failed(outage):
    repo, env, client, server, restart = outage
    proc = start_teacher(repo, env)
    wait_for_metrics(client, proc)
    stop(server[0], signal.SIGKILL)
    out, err = proc.communicate(timeout=600)
    uri = env["MLFLOW_TRACKING_URI"]
    assert proc.returncode != 0 and "Traceback" not in err, err[-3000:]
    assert f"error: MLflow tracking server {uri} did not answer for 4 s" in err
    assert (repo / ".checkpoints/teacher.pt").is_file() and not (repo / "models/rounds/r0/model.pt").exists()

    server.append(restart())
    assert teacher_runs(client)[0].info.status == "RUNNING"  # its process could not end it
    out = run([sys.executable, "stages/teacher.py"], repo, env)
    assert "resuming from step " in out and "had lost its process; it is now FAILED" in out
    dead, resumed = teacher_runs(client)
    assert (dead.info.status, resumed.info.status) == ("FAILED", "FINISHED")
    assert dead.data.tags["ended_by"] == "the next stage run found its process gone"
    steps = [m.step for m in client.get_metric_history(resumed.info.run_id, "train/loss")]
    assert steps == [*range(0, 300, 25), 299]  # the resumed run logs the whole curve again
