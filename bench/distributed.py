"""How far a 2-process torchrun (gloo) run lands from a 1-process run, against the spread across seeds of
1-process runs: the tolerance of tests/test_distributed.py comes from this.

For each seed: the pipeline to `pseudolabel@r1` on the shapes data of tests/shapes.py (a dataset a few steps
learn well) in a temporary repository, then the teacher and the r1 student in one process and in two, each
scored on the test images. Usage: python bench/distributed.py [--seeds 0 1 2 3] [--out docs/distributed.json]
"""

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from pipeline_repo import make_repo, run  # noqa: E402
from shapes import write_shapes  # noqa: E402
from test_distributed import SETTINGS, accuracy_of, torchrun  # noqa: E402


def one_seed(seed: int, work: Path) -> dict[str, float]:
    data, repo = write_shapes(work / "shapes"), work / "repo"
    env = make_repo(repo, {**SETTINGS, "seed": seed}, data=data)
    run(["dvc", "repro", "pseudolabel@r1"], repo, env)
    out = {"teacher_1": accuracy_of(repo, "r0")}
    run(["python", "stages/student.py", "--round", "r1"], repo, env)
    out["student_1"] = accuracy_of(repo, "r1")
    shutil.move(repo / "models/rounds/r0", work / "r0_single")
    torchrun(["stages/teacher.py"], repo, env)
    out["teacher_2"] = accuracy_of(repo, "r0")
    shutil.rmtree(repo / "models/rounds/r0")
    shutil.move(work / "r0_single", repo / "models/rounds/r0")  # the same teacher for the students
    torchrun(["stages/student.py", "--round", "r1"], repo, env)
    out["student_2"] = accuracy_of(repo, "r1")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "distributed.json")
    parser.add_argument("--note", default="", help="the results key, e.g. the ONEDNN_MAX_CPU_ISA setting")
    args = parser.parse_args()
    results = {}
    for seed in args.seeds:
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as work:
            results[seed] = one_seed(seed, Path(work))
        print(f"seed {seed}: {results[seed]} ({time.perf_counter() - start:.0f} s)", flush=True)
    for model in ("teacher", "student"):
        one = [r[f"{model}_1"] for r in results.values()]
        gaps = [r[f"{model}_2"] - r[f"{model}_1"] for r in results.values()]
        print(
            f"{model}: one process {statistics.mean(one):.3f} ± {statistics.pstdev(one):.3f} across seeds; "
            f"two minus one: {', '.join(f'{g:+.3f}' for g in gaps)}"
        )
    kept = json.loads(args.out.read_text()) if args.out.is_file() else {}
    kept[args.note or "default"] = {str(k): v for k, v in results.items()}
    args.out.write_text(json.dumps(kept, indent=2) + "\n")


if __name__ == "__main__":
    main()
