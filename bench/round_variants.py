"""Rounds r1..rN of a settings variant on a finished run's prepared store, SSL encoder and teacher.

Runs the real stage scripts (pseudolabel and student per round, then evaluate) with --root's params.yaml
plus `--set` overrides (rounds.r2.pseudolabel={...} too), in --out/NAME, reading prepared/, models/ssl and
models/rounds/r0 of --root (the demo's `dvc repro` by default), and prints each round's test accuracy. A
variant of the student or the pseudo-labels thus costs its rounds only (about 5 minutes on the demo, 2 CPU
cores).

    python bench/round_variants.py online-ema --set student.consistency=online student.online.teacher_ema=0.99
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SHARED = ("labeled", "unlabeled", "test", "analysis", "prepared", "encoder", "weights")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("name")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="dotted params keys")
    parser.add_argument("--root", type=Path, default=ROOT, help="the finished run (default: this checkout)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "bench_out" / "round_variants")
    args = parser.parse_args()
    args.root, out = args.root.resolve(), args.out.resolve() / args.name  # the stages run in `out`
    shutil.rmtree(out, ignore_errors=True)
    (out / "rounds").mkdir(parents=True)
    params = yaml.safe_load((args.root / "params.yaml").read_text())
    # before --set, which may override a round
    params["rounds"] = {f"r{k}": {"prev": f"r{k - 1}"} for k in range(1, args.rounds + 1)}
    for pair in args.set:
        key, value = pair.split("=", 1)
        *parents, last = key.split(".")
        section = params
        for parent in parents:
            section = section[parent]
        section[last] = yaml.safe_load(value)
    teacher = args.root / params["paths"]["rounds"] / "r0"  # the run's r0 (an absolute path stays as it is)
    for key, value in params["paths"].items():  # the run's inputs; this variant's own outputs under `out`
        params["paths"][key] = str(args.root / value if key in SHARED else out / Path(value).name)
    params["paths"]["rounds"] = str(out / "rounds")
    params["checkpoints"]["dir"] = str(out / ".checkpoints")
    params["mlflow"]["experiment"] = "round-variants"
    (out / "rounds" / "r0").symlink_to(teacher.resolve())
    params_file = out / "params.yaml"
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "PYTHONPATH": str(ROOT), "PIPELINE_ID": args.name}
    stages = [
        [stage, "--round", f"r{k}"] for k in range(1, args.rounds + 1) for stage in ("pseudolabel", "student")
    ]
    start = time.perf_counter()
    for stage, *rest in [*stages, ["evaluate"]]:
        cmd = [sys.executable, str(ROOT / "stages" / f"{stage}.py"), "--params", str(params_file), *rest]
        proc = subprocess.run(cmd, cwd=out, env=env, capture_output=True, text=True)
        if proc.returncode:
            sys.exit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    results = json.loads((out / "metrics" / "eval.json").read_text())
    accuracy = {name: round(100 * m["test/accuracy"], 2) for name, m in results.items()}
    minutes = round((time.perf_counter() - start) / 60, 1)
    print(json.dumps({"name": args.name, "set": args.set, "minutes": minutes, "test_accuracy": accuracy}))


if __name__ == "__main__":
    main()
