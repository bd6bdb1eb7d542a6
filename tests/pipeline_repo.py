"""A temporary git + DVC repository holding the pipeline and the committed fixture, for end-to-end tests."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = Path(__file__).parent / "fixtures" / "data"

TINY = {  # small enough for seconds per stage on 2 CPU cores
    "pretrain": {"epochs": 2, "min_steps": 1, "batch_size": 64, "knn_test_images": 50},
    # cross_fit_folds 0: the labels-per-class rule picks the teacher, one training instead of ten
    # (cross-fitting runs in tests/test_train.py and, through the stage, in tests/test_backbones_e2e.py)
    "teacher": {"min_steps": 60, "max_steps": 60, "batch_size": 16, "cross_fit_folds": 0},
    "pseudolabel": {"threshold": 0.15},
    # lr 0.03: a student fine-tunes a trained model for only 15 steps here; at the default 0.1 the fixture's
    # students lost to their teacher (44 % -> 24 / 17 %) and swung between 13 and 35 % with the CPU's kernels
    "student": {"min_steps": 15, "max_steps": 15, "batch_labeled": 8, "batch_unlabeled": 24, "lr": 0.03},
    "rounds": {"r1": {"prev": "r0"}},
    # the fastest kernels: these tests check what the stages do, not the kernel pins (1.26x slower training
    # steps; tests/test_compute.py and the e2e repository of tests/test_e2e.py check the pins)
    "compute": {"cpu_kernels": "native"},
}


def run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: int = 600) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout + proc.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(url: str, proc: subprocess.Popen, log: Path, seconds: float = 120) -> None:
    """Return once `url` answers; fail with the log's tail if `proc` exits or `seconds` pass first."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise AssertionError(f"{url} did not come up:\n{log.read_text()[-3000:]}") from None
            time.sleep(0.5)


def mlflow_server(root: Path, port: int) -> subprocess.Popen:
    """`mlflow server` on 127.0.0.1:`port` with a SQLite backend and proxied artifacts under `root`; returns
    once it answers. Its output goes to `root/server.log` (appended: a restarted server keeps the log)."""
    cmd = [
        sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
        "--workers", "1",
        "--backend-store-uri", f"sqlite:///{root / 'server.db'}",
        "--artifacts-destination", str(root / "artifacts"),
    ]  # fmt: skip
    with (root / "server.log").open("a") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    wait_until_up(f"http://127.0.0.1:{port}/health", proc, root / "server.log", seconds=90)
    return proc


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    """Stop a process started in its own session and everything it started (the server's workers)."""
    try:
        os.killpg(proc.pid, sig)
        proc.wait(timeout=20)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def merge(base: dict, override: dict) -> dict:
    """Nested update; `rounds` is replaced as a whole."""
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict) and key != "rounds":
            merge(base[key], value)
        else:
            base[key] = value
    return base


def make_repo(
    repo: Path, overrides: dict, extra_env: dict[str, str] | None = None, data: Path = FIXTURE
) -> dict[str, str]:
    """Copy pipeline/, stages/, dvc.yaml, params.yaml (with TINY and `overrides`) and the image folders of
    `data` (default: the committed fixture) into `repo`, `git init` + `dvc init` + `dvc add` the data and
    commit. Returns the environment to run in."""
    repo.mkdir(parents=True)
    for name in ("pipeline", "stages", "weights"):
        shutil.copytree(ROOT / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "dvc.yaml", repo)
    params = merge(merge(yaml.safe_load((ROOT / "params.yaml").read_text()), TINY), overrides)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    shutil.copytree(data, repo / "data")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_", "PIPELINE_"))}
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}",
        PYTHONPATH=str(repo),
        NO_ALBUMENTATIONS_UPDATE="1",
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@t",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@t",
        **(extra_env or {}),
    )
    run(["git", "init", "-q"], repo, env)
    run(["dvc", "init", "-q"], repo, env)
    run(["dvc", "add", "-q", "data/labeled", "data/unlabeled", "data/test", "data/analysis.csv"], repo, env)
    run(["git", "add", "-A"], repo, env)
    run(["git", "commit", "-qm", "fixture"], repo, env)
    return env
