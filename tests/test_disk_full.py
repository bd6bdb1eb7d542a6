"""A full disk: `prepare` and a training stage write their outputs to a small tmpfs until it is full. They
stop with one line naming the full device, leave no half-written output, and keep the previous outputs and
resume points, so the next run, with space freed, goes on. Mounting a tmpfs needs root: else they skip."""

import hashlib
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pipeline_repo import make_repo

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture
def disk(tmp_path):
    """Mount a tmpfs of the given size at tmp_path/disk (again, to resize it); unmounted afterwards."""
    mount = tmp_path / "disk"
    mount.mkdir()

    def resize(size: str) -> Path:
        if subprocess.run(["mountpoint", "-q", str(mount)]).returncode == 0:
            subprocess.run(["umount", str(mount)], check=True)
        cmd = ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {proc.stderr.strip()}")
        return mount

    yield resize
    subprocess.run(["umount", str(mount)], capture_output=True)


def stage(repo: Path, env: dict[str, str], name: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, f"stages/{name}.py"], cwd=repo, env=env, capture_output=True, text=True, timeout=300
    )


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def statuses(repo: Path, run_name: str) -> list[str]:
    db = sqlite3.connect(repo / "mlflow.db")
    rows = db.execute("SELECT status FROM runs WHERE name = ? ORDER BY start_time", (run_name,)).fetchall()
    return [status for (status,) in rows]


def assert_stopped_on_full_disk(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: no space left on device"), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


def test_prepare_on_a_full_disk_stops_naming_it_and_keeps_the_previous_store(tmp_path, disk):
    mount = disk("900k")  # the 28 px store fits (its build peaks near 560 kB); a 48 px one (1.5 MB) does not
    repo = tmp_path / "repo"
    env = make_repo(repo, {"paths": {"prepared": str(mount / "prepared")}})
    assert stage(repo, env, "prepare").returncode == 0
    before = digests(mount / "prepared")

    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["data"]["image_size"] = 48
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert_stopped_on_full_disk(stage(repo, env, "prepare"))
    assert digests(mount / "prepared") == before  # the previous store, byte for byte
    assert sorted(p.name for p in mount.iterdir()) == ["prepared"]  # no half-built side folder
    assert statuses(repo, "00 prepare") == ["FINISHED", "FAILED"]


def test_a_training_stage_on_a_full_disk_keeps_its_resume_point_and_resumes(tmp_path, disk):
    mount = disk("64k")  # the teacher's model file (about 300 kB) does not fit
    repo = tmp_path / "repo"
    overrides = {"paths": {"rounds": str(mount / "rounds")}, "checkpoints": {"every_steps": 20}}
    env = make_repo(repo, overrides)
    for name in ("prepare", "pretrain"):
        proc = stage(repo, env, name)
        assert proc.returncode == 0, proc.stderr[-2000:]

    proc = stage(repo, env, "teacher")
    assert_stopped_on_full_disk(proc)
    assert f"writing {mount / 'rounds' / 'r0' / 'model.pt'}" in proc.stderr  # the output it could not write
    assert list((repo / ".checkpoints").glob("teacher*.pt"))  # the resume point is kept
    assert not (mount / "rounds" / "r0" / "model.pt").exists()
    assert not [p for p in mount.rglob("*") if p.is_file()]  # no half-written file left behind
    assert statuses(repo, "02 r0/teacher") == ["FAILED"]

    disk("16m")  # space freed
    proc = stage(repo, env, "teacher")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "resuming from step" in proc.stderr
    assert (mount / "rounds" / "r0" / "model.pt").is_file()
    assert statuses(repo, "02 r0/teacher") == ["FAILED", "FINISHED"]
