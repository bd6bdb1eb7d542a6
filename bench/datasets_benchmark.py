"""The whole pipeline on datasets other than the demo; writes docs/datasets_benchmark.md (and .json).

For each dataset of bench/datasets.py: export it into a fresh git + DVC repository holding a copy of the
pipeline (as tests/pipeline_repo.make_repo builds one), with `params.yaml` of the commit unchanged except the
data section where a dataset needs it (tinted: 3 channels, 48 px), and time `dvc repro` there. Then, on the
same labeled/test split of the images the pipeline prepared (same resolution), two references: logistic
regression on raw pixels, and the supervised-only run of the same CNN (bench/common.scratch_teacher).

    python bench/datasets_benchmark.py                       # digits and tinted
    python bench/datasets_benchmark.py --datasets digits     # a few minutes on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from sklearn.linear_model import LogisticRegression

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, doc_header, scratch_teacher, write_doc  # noqa: E402
from datasets import export_digits, export_tinted  # noqa: E402

from pipeline.config.full import load_params  # noqa: E402
from pipeline.data.store import Prepared, load_prepared  # noqa: E402

DATASETS = {  # exporter, the keys of params.yaml's `data` section it changes, what it is
    "digits": (
        export_digits,
        {},
        "scikit-learn's 8x8 handwritten digits, grayscale (values 0..16 scaled to 0..255).",
    ),
    "tinted": (
        export_tinted,
        {"channels": 3, "image_size": 48},
        "Fashion-MNIST items upscaled to 48x48 RGB, a random colour each, on smooth random noise in another "
        "colour.",
    ),
}
SCRATCH_STEPS, SCRATCH_LR = 1500, 0.1  # the supervised-only reference of bench/pseudo_labels.py


def edit_data_params(text: str, changes: dict[str, int]) -> str:
    """params.yaml's text with keys of its `data` section set, comments and layout kept."""
    for key, value in changes.items():
        text, n = re.subn(rf"^(  {key}:\s*)\S+", rf"\g<1>{value}", text, count=1, flags=re.MULTILINE)
        assert n == 1, f"params.yaml: no line '  {key}:' to set"
    data = yaml.safe_load(text)["data"]
    assert all(data[k] == v for k, v in changes.items()), f"params.yaml: data section is {data}"
    return text


def repo_env(repo: Path) -> dict[str, str]:
    """The environment of tests/pipeline_repo.make_repo: this venv's `python` and `dvc`, the repo importable,
    no MLflow/DVC settings of the caller, a git identity."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_", "PIPELINE_"))}
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}",
        PYTHONPATH=str(repo),
        NO_ALBUMENTATIONS_UPDATE="1",
        GIT_AUTHOR_NAME="bench",
        GIT_AUTHOR_EMAIL="bench@localhost",
        GIT_COMMITTER_NAME="bench",
        GIT_COMMITTER_EMAIL="bench@localhost",
    )
    return env


def run(cmd: list[str], repo: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def make_repo(repo: Path, data_changes: dict[str, int]) -> dict[str, str]:
    """Copy pipeline/, stages/, weights/, dvc.yaml and params.yaml (with `data_changes`) into `repo`, whose
    data/ holds the exported folders; git init, dvc init, dvc add the data, commit. Returns the environment to
    run in."""
    for name in ("pipeline", "stages", "weights"):
        shutil.copytree(ROOT / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "dvc.yaml", repo)
    (repo / "params.yaml").write_text(edit_data_params((ROOT / "params.yaml").read_text(), data_changes))
    env = repo_env(repo)
    run(["git", "init", "-q"], repo, env)
    run(["dvc", "init", "-q"], repo, env)
    run(["dvc", "add", "-q", "data/labeled", "data/unlabeled", "data/test", "data/analysis.csv"], repo, env)
    run(["git", "add", "-A"], repo, env)
    run(["git", "commit", "-qm", "benchmark data"], repo, env)
    return env


def repro_failure(output: str) -> dict[str, str]:
    """The stage `dvc repro` stopped at and the exception that stopped it, from its output."""
    lines = output.strip().splitlines() or ["(no output)"]
    stage = next((m[1] for line in lines if (m := re.search(r"failed to reproduce '([^']+)'", line))), "?")
    errors = [line for line in lines if re.match(r"[\w.]+(Error|Exception): ", line)]
    return {"stage": stage, "error": errors[-1] if errors else lines[-1]}


def logistic_regression(store: Prepared) -> float:
    """Test accuracy of logistic regression on the labeled images' raw pixels in [0, 1]."""
    train, test = store.split("labeled"), store.split("test")

    def pixels(index):
        return store.images[index].reshape(len(index), -1) / 255.0  # (N, H*W*C)

    model = LogisticRegression(max_iter=2000).fit(pixels(train.index), train.labels)
    return float(model.score(pixels(test.index), test.labels))


def run_dataset(name: str, work: Path, scratch_steps: int) -> dict:
    """Export, build the repo, `dvc repro`, the two references; the numbers of one dataset. A failed stage
    is recorded, not raised; the references still run when `prepare` finished."""
    export, data_changes, _ = DATASETS[name]
    repo = work / name
    counts = export(repo / "data")
    env = make_repo(repo, data_changes)
    start = time.perf_counter()
    proc = subprocess.run(["dvc", "repro"], cwd=repo, env=env, capture_output=True, text=True)
    repro_seconds = time.perf_counter() - start
    params = load_params(repo / "params.yaml")
    result = {
        "dataset": name, "images": counts, "data_changes": data_changes, "repro_seconds": repro_seconds,
        "image_size": params.data.image_size, "channels": params.data.channels,
    }  # fmt: skip
    if proc.returncode != 0:
        result["failed"] = repro_failure(proc.stdout + proc.stderr)
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-30:])
        print(f"{name}: dvc repro failed after {repro_seconds:.0f} s:\n{tail}", flush=True)
    metrics = {m: repo / params.paths.metrics / f"{m}.json" for m in ("prepare", "pretrain", "eval")}
    result.update({m: json.loads(path.read_text()) for m, path in metrics.items() if path.is_file()})
    if "prepare" not in result:
        return result
    store = load_prepared(repo / params.paths.prepared)
    result["logistic_regression"] = logistic_regression(store)
    start = time.perf_counter()
    result["supervised"] = scratch_teacher(params, store, scratch_steps, SCRATCH_LR)
    result["supervised_seconds"] = time.perf_counter() - start
    rounds = ", ".join(f"{r} {m['test/accuracy']:.2%}" for r, m in result.get("eval", {}).items())
    print(
        f"{name}: dvc repro {repro_seconds:.0f} s, logistic regression {result['logistic_regression']:.2%}, "
        f"supervised {result['supervised']:.2%}, {rounds or 'no rounds'}",
        flush=True,
    )
    return result


def percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f} %"


def dataset_section(r: dict, scratch_steps: int) -> list[str]:
    n = r["images"]
    changes = ", ".join(f"`data.{k}: {v}`" for k, v in r["data_changes"].items()) or "none"
    lines = [
        f"## {r['dataset']}",
        "",
        f"{DATASETS[r['dataset']][2]} {n['labeled']:,} labeled, {n['unlabeled']:,} unlabeled and "
        f"{n['test']:,} test images; params.yaml changes: {changes}. "
        f"`dvc repro`: {r['repro_seconds'] / 60:.1f} minutes{' until it failed' if 'failed' in r else ''}.",
        "",
    ]
    if "failed" in r:
        lines += [f"`dvc repro` failed at stage `{r['failed']['stage']}`: `{r['failed']['error']}`", ""]
    if "prepare" not in r:
        return lines
    described = f"Images as the pipeline prepared them: {r['image_size']} px, {r['channels']} channel(s)."
    if "pretrain" in r:
        pretrain = r["pretrain"]
        described += (
            f" SSL encoder: kNN accuracy {percent(pretrain['knn/accuracy'])}, effective rank "
            f"{pretrain['ssl/effective_rank']:.1f}."
        )
    lines += [
        described,
        "",
        "| model | test accuracy | PL precision | PL accepted |",
        "| --- | ---: | ---: | ---: |",
        f"| logistic regression (raw pixels) | {percent(r['logistic_regression'])} | – | – |",
        f"| supervised only (same CNN, {scratch_steps} steps) | {percent(r['supervised'])} | – | – |",
    ]
    for k, (round_name, m) in enumerate(r.get("eval", {}).items()):
        model = "teacher (r0)" if k == 0 else f"student {round_name}"
        accepted = f"{m['pl/accepted']:,.0f}" if "pl/accepted" in m else "–"
        lines.append(
            f"| {model} | {percent(m['test/accuracy'])} | {percent(m.get('pl/precision'))} | {accepted} |"
        )
    return [*lines, ""]


def markdown(results: list[dict], command: str, scratch_steps: int) -> str:
    lines = [
        *doc_header("The pipeline on other datasets: 8x8 digits and tinted Fashion-MNIST", command),
        "`params.yaml` of the commit, changed only where a section says so; `dvc repro` in a fresh git + "
        "DVC repository. References on the same labeled images, tested on the same test images, both at the "
        "resolution the pipeline prepared: logistic regression on raw pixels (scikit-learn), and the "
        f"pipeline's CNN from random initialisation on the labeled images alone ({scratch_steps} steps, lr "
        f"{SCRATCH_LR}, the teacher's weak augmentation, no SSL, no unlabeled images). PL precision against "
        "the analysis labels. One seed (0).",
        "",
    ]
    for r in results:
        lines += dataset_section(r, scratch_steps)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", nargs="+", choices=sorted(DATASETS), default=list(DATASETS))
    parser.add_argument("--scratch-steps", type=int, default=SCRATCH_STEPS)
    parser.add_argument("--work", type=Path, help="keep the repositories here (default: a temporary folder)")
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "datasets_benchmark.md")
    parser.add_argument("--results", type=Path, default=ROOT / "docs" / "datasets_benchmark.json")
    args = parser.parse_args()
    command = " ".join(["python bench/datasets_benchmark.py", *sys.argv[1:]])
    results = []
    with tempfile.TemporaryDirectory(prefix="datasets_benchmark_") as tmp:
        work = args.work or Path(tmp)
        for name in args.datasets:
            results.append(run_dataset(name, work, args.scratch_steps))
            args.results.parent.mkdir(parents=True, exist_ok=True)
            args.results.write_text(json.dumps(results, indent=1) + "\n")
            write_doc(args.doc, markdown(results, command, args.scratch_steps))
    print(markdown(results, command, args.scratch_steps))


if __name__ == "__main__":
    main()
