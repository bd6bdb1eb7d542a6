"""`dvc repro` killed with SIGKILL in the middle of a training stage: the rerun resumes from the stage's last
resume point and ends with the same model, byte for byte, as a run that was never killed, and the killed
stage's MLflow run, left RUNNING, ends FAILED."""

import os
import re
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import psutil
import pytest
import torch
from pipeline_repo import make_repo, run
from shapes import write_shapes
from test_distributed import ACCURACY_TOLERANCE, LEARNED, SETTINGS, accuracy_of

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


def test_sigkill_of_torchrun_mid_student_then_repro_resumes_both_processes(tmp_path):
    """The student under `torchrun` with 2 gloo processes, as the README sets it up in dvc.yaml: each process
    keeps its own resume point, and after a SIGKILL of the process group they resume from the same step and
    end within the 2-process tolerance of an unbroken run (tests/test_distributed.py)."""
    repo = tmp_path / "repo"
    student = {**SETTINGS["student"], "min_steps": 150, "max_steps": 150}
    env = make_repo(
        repo, {**SETTINGS, "student": student, "checkpoints": {"every_steps": 10}},
        data=write_shapes(tmp_path / "shapes"),
    )  # fmt: skip
    dvc = repo / "dvc.yaml"
    launch = "torchrun --standalone --nproc_per_node 2 stages/student.py"
    dvc.write_text(dvc.read_text().replace("python stages/student.py", launch))
    run(["dvc", "repro", "pseudolabel@r1"], repo, env)
    proc = subprocess.Popen(
        ["dvc", "repro", "student@r1"], cwd=repo, env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    points = [repo / f".checkpoints/student-r1-rank{rank}of2.pt" for rank in (0, 1)]
    wait_for_resume_point(points[1], 30, proc)
    tree = [proc.pid, *(child.pid for child in psutil.Process(proc.pid).children(recursive=True))]
    for pid in tree:  # torchrun starts each worker in a session of its own: kill the whole tree at once
        os.kill(pid, signal.SIGKILL)
    proc.wait()
    assert not (repo / "models/rounds/r1/model.pt").exists()

    out = run(["dvc", "repro", "student@r1"], repo, env)
    resumed = re.findall(r"resuming from step (\d+) of \S+rank(\d)of2", out)
    assert sorted(rank for _, rank in resumed) == ["0", "1"], out[-3000:]
    assert len({step for step, _ in resumed}) == 1 and int(resumed[0][0]) >= 30  # the same step
    assert not list((repo / ".checkpoints").glob("student-r1*"))  # every process's, removed once saved
    after_kill = accuracy_of(repo, "r1")

    out = run(["dvc", "repro", "--force", "--single-item", "student@r1"], repo, env)  # unbroken, from step 0
    assert "resuming" not in out
    unbroken = accuracy_of(repo, "r1")
    assert min(after_kill, unbroken) >= LEARNED and abs(after_kill - unbroken) <= ACCURACY_TOLERANCE
