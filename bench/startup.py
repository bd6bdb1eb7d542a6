"""Stage start-up: what each DVC stage costs outside its own work (docs/startup.md).

On the test fixture (tests/fixtures/data: 200 unlabeled, 30 labeled and 100 test images) with the tests' tiny
schedules, where each stage's own training is a second or two, so nearly all of a stage's time is start-up.
After one `dvc repro` of the whole pipeline, for every stage of one round, `--repeats` times (medians):

- import: `python -X importtime -c "import stages.<stage>"`, the stage module's cumulative import time;
- process: the stage's command run directly (`python stages/<stage>.py [--round r1]`), wall seconds;
- run: its MLflow run, end minus start (the stage's work, its logging and model export included);
- outside the run: process - run (interpreter, imports, params, MLflow setup and teardown);
- dvc: `dvc repro --single-item --force <stage>`, wall seconds; DVC's own: dvc - process.

    python bench/startup.py                       # docs/startup.md
    python bench/startup.py --repeats 1 --doc /tmp/startup.md
"""

from __future__ import annotations

import argparse
import os
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, doc_header, write_doc

sys.path.insert(0, str(ROOT / "tests"))
from pipeline_repo import make_repo, run  # noqa: E402  (the tests' fixture repository, reused)

STAGES = ("prepare", "pretrain", "teacher", "pseudolabel@r1", "student@r1", "evaluate")
RUN_NAMES = {  # MLflow run names are '<order> <name>', e.g. '03 r1/pseudolabel'
    "prepare": "prepare", "pretrain": "pretrain", "teacher": "r0/teacher", "pseudolabel@r1": "r1/pseudolabel",
    "student@r1": "r1/student", "evaluate": "evaluate",
}  # fmt: skip


def command(stage: str) -> list[str]:
    script, _, round_name = stage.partition("@")
    return [sys.executable, f"stages/{script}.py"] + (["--round", round_name] if round_name else [])


def timed(cmd: list[str], repo: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    run(cmd, repo, env)
    return time.perf_counter() - start


def import_seconds(stage: str, repo: Path, env: dict[str, str]) -> float:
    module = f"stages.{stage.partition('@')[0]}"
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        cwd=repo, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    (line,) = [line for line in proc.stderr.splitlines() if re.search(rf"\|\s*{re.escape(module)}$", line)]
    return int(line.split("|")[1]) / 1e6


def last_run_seconds(repo: Path, stage: str) -> float:
    """Duration of the latest MLflow run of `stage`."""
    with sqlite3.connect(repo / "mlflow.db") as db:
        start, end = db.execute(
            "SELECT start_time, end_time FROM runs WHERE name LIKE ? ORDER BY start_time DESC LIMIT 1",
            (f"% {RUN_NAMES[stage]}",),
        ).fetchone()
    return (end - start) / 1000


def measure(repo: Path, env: dict[str, str], repeats: int) -> list[dict[str, float | str]]:
    rows = []
    for stage in STAGES:
        samples = {"import": [], "process": [], "run": [], "dvc": []}
        for _ in range(repeats):
            samples["import"].append(import_seconds(stage, repo, env))
            samples["process"].append(timed(command(stage), repo, env))
            samples["run"].append(last_run_seconds(repo, stage))
            samples["dvc"].append(timed(["dvc", "repro", "-q", "--single-item", "--force", stage], repo, env))
        row = {key: statistics.median(values) for key, values in samples.items()}
        rows.append(
            {
                "stage": stage,
                **row,
                "outside": row["process"] - row["run"],
                "dvc_own": row["dvc"] - row["process"],
            }
        )
        print(
            f"{stage}: " + ", ".join(f"{k} {v:.2f} s" for k, v in rows[-1].items() if k != "stage"),
            flush=True,
        )
    return rows


def table(rows: list[dict[str, float | str]]) -> list[str]:
    lines = [
        "| stage | import s | process s | MLflow run s | outside the run s | dvc repro s | DVC's own s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['stage']} | {r['import']:.2f} | {r['process']:.2f} | {r['run']:.2f} | {r['outside']:.2f} "
            f"| {r['dvc']:.2f} | {r['dvc_own']:.2f} |"
        )
    total = {k: sum(r[k] for r in rows) for k in ("import", "process", "run", "outside", "dvc", "dvc_own")}
    lines.append(
        f"| **all {len(rows)}** | {total['import']:.1f} | {total['process']:.1f} | {total['run']:.1f} "
        f"| {total['outside']:.1f} | {total['dvc']:.1f} | {total['dvc_own']:.1f} |"
    )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--doc", type=Path, default=ROOT / "docs/startup.md")
    args = parser.parse_args()
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        env = make_repo(repo, {})
        start = time.perf_counter()
        run(["dvc", "repro"], repo, env)
        whole = time.perf_counter() - start
        print(f"dvc repro of the whole fixture pipeline: {whole:.1f} s", flush=True)
        rows = measure(repo, env, args.repeats)
    command_line = "python bench/startup.py" + (f" --repeats {args.repeats}" if args.repeats != 3 else "")
    lines = doc_header("Stage start-up on the test fixture", command_line)
    lines += [
        f"The first `dvc repro` of the fixture's pipeline ({len(STAGES)} stages with one round, "
        f"evaluate included) took {whole:.1f} s. Per stage, median of {args.repeats}:",
        "",
        *table(rows),
    ]
    write_doc(args.doc, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
