"""A training stage under `torchrun` (2 gloo processes) killed with SIGKILL mid-round: the rerun resumes every
process from the same step and ends within the 2-process tolerance of an unbroken run."""

import os
import re
import signal
import subprocess

import psutil
import pytest
from pipeline_repo import make_repo, run
from shapes import write_shapes
from test_distributed import ACCURACY_TOLERANCE, LEARNED, SETTINGS, accuracy_of
from test_interrupt import wait_for_resume_point

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]  # about 1.5 min here


def test_sigkill_of_torchrun_mid_student_then_repro_resumes_both_processes(tmp_path):
    """The student under `torchrun` with 2 gloo processes, as the README sets it up in dvc.yaml: each process
    keeps its own resume point, and after a SIGKILL of the process group they resume from the same step and
    end within the 2-process tolerance of an unbroken run (tests/test_distributed.py)."""
    repo = tmp_path / "repo"
    student = {**SETTINGS["student"], "min_steps": 100, "max_steps": 100}
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
