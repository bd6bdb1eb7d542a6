"""`dvc repro` killed with SIGKILL in the middle of a training stage: the rerun resumes from the stage's last
resume point and ends with the same model, byte for byte, as a run that was never killed, and the killed
stage's MLflow run, left RUNNING, ends FAILED."""

import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
import torch
from pipeline_repo import make_repo, run

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]  # about 2.5 min here

TEACHER = {
    "teacher": {"min_steps": 600, "max_steps": 600, "batch_size": 16},
    "checkpoints": {"every_steps": 25},
}


def wait_for_resume_point(point: Path, step: int, proc: subprocess.Popen, timeout: float = 300) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the stage ended before it could be killed"
        try:
            saved = torch.load(point, weights_only=False)["step"]  # written atomically: always whole
        except FileNotFoundError:  # not yet, or being replaced (torchrun keeps the one before)
            saved = -1
        if saved >= step:
            return saved
        time.sleep(0.01)
    raise TimeoutError(f"no resume point at step >= {step} in {point}")


def test_sigkill_mid_stage_then_repro_resumes_and_matches_an_unbroken_run(tmp_path):
    repo = tmp_path / "repo"
    env = make_repo(repo, TEACHER)
    model = repo / "models/rounds/r0/model.pt"
    point = repo / ".checkpoints/teacher.pt"

    proc = subprocess.Popen(  # the first run ever of this teacher: DVC's run cache cannot stand in for it
        ["dvc", "repro", "teacher"],
        cwd=repo,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the kill reaches the stage script too
    )
    killed_at = wait_for_resume_point(point, 50, proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not model.exists()  # killed mid-stage: no model written

    out = run(["dvc", "repro", "teacher"], repo, env)
    assert "resuming from step " in out, out[-3000:]
    assert "MLflow run '02 r0/teacher' had lost its process; it is now FAILED" in out
    db = sqlite3.connect(repo / "mlflow.db")
    statuses = db.execute("SELECT name, status FROM runs ORDER BY start_time").fetchall()
    assert [s for name, s in statuses if name.endswith("teacher")] == ["FAILED", "FINISHED"]  # none RUNNING
    assert int(out.split("resuming from step ")[1].split()[0]) >= killed_at
    resumed = model.read_bytes()
    assert not point.exists()  # removed once the stage saved its model
    assert "Data and pipelines are up to date" in run(["dvc", "status", "teacher"], repo, env)

    out = run(["dvc", "repro", "--force", "--single-item", "teacher"], repo, env)  # unbroken, from step 0
    assert "resuming" not in out
    assert model.read_bytes() == resumed
