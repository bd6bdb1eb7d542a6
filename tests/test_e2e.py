"""The whole pipeline, `dvc repro` on the committed fixture, in a temporary git + DVC repository."""

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = Path(__file__).parent / "fixtures" / "data"

TINY = {  # small enough for seconds per stage on 2 CPU cores
    "pretrain": {"epochs": 2, "batch_size": 64, "knn_test_images": 50},
    "teacher": {"steps": 15, "batch_size": 16},
    "pseudolabel": {"threshold": 0.15},
    "student": {"steps": 15, "batch_labeled": 8, "batch_unlabeled": 24},
    "rounds": {  # r2 also checks a round override of the selection mode and the OOD method
        "r1": {"prev": "r0"},
        "r2": {
            "prev": "r1",
            "pseudolabel": {"threshold": 0.2, "mode": "class_balanced", "ood": {"method": "mahalanobis"}},
        },
    },
}


def run(cmd: list[str], cwd: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout + proc.stderr


def merge(base: dict, override: dict) -> dict:
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict) and key != "rounds":
            merge(base[key], value)
        else:
            base[key] = value
    return base


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    repo = tmp_path_factory.mktemp("e2e") / "repo"
    repo.mkdir()
    for name in ("pipeline", "stages"):
        shutil.copytree(ROOT / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "dvc.yaml", repo)
    params = merge(yaml.safe_load((ROOT / "params.yaml").read_text()), TINY)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    shutil.copytree(FIXTURE, repo / "data")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_", "PIPELINE_"))}
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}",
        PYTHONPATH=str(repo),
        NO_ALBUMENTATIONS_UPDATE="1",
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@t",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@t",
    )
    run(["git", "init", "-q"], repo, env)
    run(["dvc", "init", "-q"], repo, env)
    run(["dvc", "add", "-q", "data/labeled", "data/unlabeled", "data/test", "data/analysis.csv"], repo, env)
    run(["git", "add", "-A"], repo, env)
    run(["git", "commit", "-qm", "fixture"], repo, env)
    run(["dvc", "repro"], repo, env)
    return repo, env


def test_repro_writes_per_round_metrics(repo):
    path, _ = repo
    results = json.loads((path / "metrics/eval.json").read_text())
    assert list(results) == ["r0", "r1", "r2"]
    for name, metrics in results.items():
        assert 0.0 <= metrics["test/accuracy"] <= 1.0 and metrics["test/images"] == 100
        if name != "r0":
            assert (
                metrics["pl/pool"] == 200
            )  # 202 files: the duplicate counts once, the corrupt file not at all
            assert 0 <= metrics["pl/precision"] <= 1
    assert results["r2"]["pl/accepted"] > 0
    prepare = json.loads((path / "metrics/prepare.json").read_text())
    assert prepare["status_error"] == 1 and prepare["status_duplicate"] == 1 and prepare["status_hidden"] == 1
    assert (path / "plots/rounds.csv").read_text().splitlines()[0].startswith("round,step,test_accuracy")
    for name in ("r1", "r2"):
        assert (path / f"pseudolabels/{name}.parquet").is_file()
    assert all((path / f"models/rounds/{r}/model.pt").is_file() for r in ("r0", "r1", "r2"))


def test_round_override_selects_class_balanced_with_mahalanobis_filter(repo):
    path, _ = repo
    r1, r2 = (pd.read_parquet(path / f"pseudolabels/{r}.parquet") for r in ("r1", "r2"))
    assert r1["copies"].max() == 1 and "over_quota" not in set(r1["reason"])
    accepted = r2[r2["accepted"]]
    quota = int(r2["in_distribution"].sum()) // 10
    per_class = accepted.groupby("pseudo_label")["copies"].sum()
    assert len(per_class) >= 2 and per_class.eq(quota).all()  # every accepted class filled up to the quota
    assert not r2["ood_score"].equals(r1["ood_score"])  # Mahalanobis on teacher features, not kNN


def test_summary_prints_the_rounds_table_with_mlflow_runs(repo):
    path, env = repo
    db = sqlite3.connect(path / "mlflow.db")
    (student,) = db.execute("SELECT run_uuid FROM runs WHERE name = 'r2/student'").fetchone()
    out = run([sys.executable, "-m", "pipeline", "summary"], path, env)
    assert "Pseudo-label rounds" in out and student in out
    assert [line.split()[1] for line in out.splitlines() if line.startswith("│ r")] == ["r0", "r1", "r2"]


def test_mlflow_has_one_parent_and_a_child_per_stage(repo):
    path, _ = repo
    db = sqlite3.connect(path / "mlflow.db")
    runs = dict(db.execute("SELECT run_uuid, name FROM runs").fetchall())
    tags = {}
    for run_id, key, value in db.execute("SELECT run_uuid, key, value FROM tags"):
        tags.setdefault(run_id, {})[key] = value
    parents = [r for r in runs if tags[r].get("kind") == "pipeline"]
    assert len(parents) == 1
    children = sorted(runs[r] for r in runs if tags[r].get("mlflow.parentRunId") == parents[0])
    assert children == sorted(
        [
            "prepare",
            "pretrain",
            "r0/teacher",
            "r1/pseudolabel",
            "r1/student",
            "r2/pseudolabel",
            "r2/student",
            "evaluate",
        ]
    )
    dvc_md5 = yaml.safe_load((path / "data/unlabeled.dvc").read_text())["outs"][0]["md5"]
    student = next(r for r in runs if runs[r] == "r2/student")
    assert tags[student]["data_hash.unlabeled"] == dvc_md5
    assert tags[student]["round"] == "r2" and tags[student]["dvc_stage"] == "student@r2"
    assert len(tags[student]["git_commit"]) == 40
    metrics = {k for (k,) in db.execute("SELECT DISTINCT key FROM metrics WHERE run_uuid = ?", (student,))}
    assert {"train/loss", "train/loss_u", "train/entropy", "pl/batch_mask_rate"} <= metrics
    pseudo = next(r for r in runs if runs[r] == "r1/pseudolabel")
    pl_metrics = {k for (k,) in db.execute("SELECT DISTINCT key FROM metrics WHERE run_uuid = ?", (pseudo,))}
    assert {"pl/accepted", "ood/rejected", "pl/mean_confidence", "pl/precision", "pl/count/bag"} <= pl_metrics


def test_second_repro_runs_nothing(repo):
    path, env = repo
    out = run(["dvc", "repro"], path, env)
    assert "Running stage" not in out
    assert "Data and pipelines are up to date" in run(["dvc", "status"], path, env)


def test_rerun_gives_identical_outputs(repo):
    """Seeded everything + deterministic kernels on CPU: forcing a stage again reproduces its bytes."""
    path, env = repo
    lock_before = yaml.safe_load((path / "dvc.lock").read_text())["stages"]
    run(["dvc", "repro", "--force", "--single-item", "student@r1", "pseudolabel@r2"], path, env)
    lock_after = yaml.safe_load((path / "dvc.lock").read_text())["stages"]
    for stage in ("student@r1", "pseudolabel@r2"):
        assert lock_after[stage]["outs"] == lock_before[stage]["outs"], f"{stage} output changed on rerun"


def test_new_unlabeled_data_reruns_from_prepare_and_checkout_restores_the_first_state(repo, tmp_path):
    """Issue 5's flow. Runs last in this module: it changes the repository the tests above read."""
    path, env = repo
    with (path / ".gitignore").open("a") as ignore:
        ignore.write("mlflow.db\n")  # tracking history is not versioned with the data
    run(["git", "add", "-A"], path, env)
    run(["git", "commit", "-qm", "first run"], path, env)
    first_commit = run(["git", "rev-parse", "HEAD"], path, env).strip()
    first_lock, first_eval = (path / "dvc.lock").read_text(), (path / "metrics/eval.json").read_text()

    new = tmp_path / "new_images"
    new.mkdir()
    rng = np.random.default_rng(7)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(new / f"fresh_{i}.png")
    any_unlabeled = sorted((path / "data/unlabeled").rglob("train_*.png"))[0]
    shutil.copy(any_unlabeled, new / "duplicate.png")
    (new / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    added = run([sys.executable, "-m", "pipeline", "add-unlabeled", str(new), "--into", "batch2"], path, env)
    assert "3 copied" in added and "1 duplicates" in added and "1 invalid" in added
    (path / "data/unlabeled/batch2/corrupt.png").write_bytes(
        (new / "corrupt.png").read_bytes()
    )  # dropped by hand
    run(["dvc", "add", "-q", "data/unlabeled"], path, env)
    new_hash = yaml.safe_load((path / "data/unlabeled.dvc").read_text())["outs"][0]["md5"]
    assert "changed deps" in run(["dvc", "status", "prepare"], path, env)

    out = run(["dvc", "repro"], path, env)
    ran = [line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")]
    assert ran[0] == "prepare" and "evaluate" in ran
    assert "3 decoded" in out  # only the three new images; the other 331 came from the previous store

    manifest = pd.read_parquet(path / "prepared/manifest.parquet").set_index("path")
    batch = manifest[manifest.index.str.startswith("batch2/")]
    assert set(batch.loc[batch["status"] == "ok", "first_version"]) == {new_hash}
    assert batch.loc["batch2/corrupt.png", "status"] == "error" and batch.loc["batch2/corrupt.png", "reason"]
    assert (manifest["first_version"] != new_hash).sum() > 300  # the images of the first version keep theirs
    assert json.loads((path / "metrics/eval.json").read_text())["r1"]["pl/pool"] == 203  # 200 + 3 new

    db = sqlite3.connect(path / "mlflow.db")
    tagged = {
        name
        for (name,) in db.execute(
            "SELECT r.name FROM runs r JOIN tags t ON r.run_uuid = t.run_uuid "
            "WHERE t.key = 'data_hash.unlabeled' AND t.value = ?",
            (new_hash,),
        )
    }
    assert {"prepare", "pretrain", "r0/teacher", "r2/student", "evaluate"} <= tagged

    run(["git", "add", "-A"], path, env)
    run(["git", "commit", "-qm", "new unlabeled images"], path, env)
    run(["git", "checkout", "-q", first_commit], path, env)
    run(["dvc", "checkout", "-q", "--force"], path, env)
    assert (path / "dvc.lock").read_text() == first_lock
    assert (path / "metrics/eval.json").read_text() == first_eval
    assert not (path / "data/unlabeled/batch2").exists()
    assert "Running stage" not in run(["dvc", "repro"], path, env)
