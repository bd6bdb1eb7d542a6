"""New unlabeled images dropped into the demo: `dvc repro` with `pretrain.warm_start` against from scratch
(docs/prepare.md, "Dropping in new images").

Needs a repository where the demo ran (`make demo`): its data, DVC cache, store and models. For each share
(default 1 % and 10 % of the 20,000-image pool) the repository is copied (without .venv; nothing in it
changes) and new Fashion-MNIST training images that the demo left out are brought in with `python -m pipeline
add-unlabeled`. Then, in that copy:

1. warm: `pretrain.warm_start: true`, `dvc repro`: pretraining continues from the demo's encoder;
2. scratch: `pretrain.warm_start: false`, `dvc repro`: the whole pipeline from scratch on the same images.

Per run: wall seconds of `dvc repro`, each stage's MLflow run seconds, and the test accuracy of the teacher
and of the promoted round.

    python bench/dropin.py                          # docs/prepare.md's drop-in table
    python bench/dropin.py --shares 0.01 --doc /tmp/dropin.md
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml
from common import ROOT, doc_header, write_doc
from PIL import Image

from pipeline.data.demo import DEBIAN_IDX_DIR, load_fashion_mnist, split_indices

NOTES = "<!-- notes: written by hand, kept when the benchmark rewrites the table above -->"


def sh(cmd: list[str], cwd: Path) -> str:
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "PYTHONPATH": str(cwd)}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed in {cwd}:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return proc.stdout + proc.stderr


def copy_repo(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True)
    excluded = ["--exclude=./.venv", "--exclude=./bench_out"]
    tar = subprocess.Popen(["tar", "-C", str(src), *excluded, "-cf", "-", "."],
                           stdout=subprocess.PIPE)  # fmt: skip
    subprocess.run(["tar", "-C", str(dst), "-xf", "-"], stdin=tar.stdout, check=True)
    tar.wait()


def new_images(idx_dir: Path, n: int, out: Path, seed: int) -> None:
    """`n` Fashion-MNIST training images the demo's export (seed 0, 4 labels per class, 20,000 unlabeled)
    did not use, as PNGs in `out`."""
    train_x, train_y = load_fashion_mnist(idx_dir)["train"]
    labeled, unlabeled = split_indices(train_y, 4, 20_000, 0, list(range(10)), 0.0)
    unused = np.setdiff1d(np.arange(len(train_y)), np.concatenate([labeled, unlabeled]))
    out.mkdir(parents=True)
    for i in np.random.default_rng(seed).choice(unused, n, replace=False):
        Image.fromarray(train_x[i]).save(out / f"new_{i:05d}.png")


def set_warm_start(repo: Path, on: bool) -> None:
    path = repo / "params.yaml"
    text = path.read_text()
    old, new = f"warm_start: {str(not on).lower()} ", f"warm_start: {str(on).lower()}"
    if old in text:
        path.write_text(text.replace(old, new.ljust(len(old)), 1))
    assert yaml.safe_load(path.read_text())["pretrain"]["warm_start"] is on


def stage_seconds(repo: Path, since_ms: int) -> dict[str, float]:
    with sqlite3.connect(repo / "mlflow.db") as db:
        rows = db.execute(
            "SELECT name, (end_time - start_time) / 1000.0 FROM runs "
            "WHERE start_time >= ? AND name LIKE '0%'",
            (since_ms,),
        ).fetchall()
    return {name.split(" ", 1)[1]: seconds for name, seconds in rows}


def repro(repo: Path) -> dict:
    since = int(time.time() * 1000)
    start = time.perf_counter()
    sh(["dvc", "repro"], repo)
    seconds = time.perf_counter() - start
    results = json.loads((repo / "metrics" / "eval.json").read_text())
    promoted = [r for r, m in results.items() if m.get("promoted")] or [list(results)[-1]]
    return {
        "seconds": seconds,
        "stages": stage_seconds(repo, since),
        "teacher": results[list(results)[0]]["test/accuracy"],
        "promoted": promoted[0],
        "accuracy": results[promoted[0]]["test/accuracy"],
    }


def markdown(results: list[dict], command: str) -> str:
    lines = doc_header("Dropping new images into the demo: warm start against from scratch", command)
    lines += [
        "The demo after `make demo` (20,000 unlabeled images); new Fashion-MNIST training images the demo "
        "left out, added with `python -m pipeline add-unlabeled`; then `dvc repro` twice in the same copy: "
        "with `pretrain.warm_start: true` (pretraining continues from the demo's encoder), then with `false` "
        "(from scratch on the same images). Test accuracy on all 10,000 test images.",
        "",
        "| new images | run | `dvc repro` min | pretrain s | teacher | promoted | warm / scratch time |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        warm, scratch = r["warm"], r["scratch"]
        for name, run in (("warm start", warm), ("from scratch", scratch)):
            ratio = f"**{warm['seconds'] / scratch['seconds']:.0%}**" if name == "warm start" else ""
            lines.append(
                f"| {r['new']:,} ({r['share']:.0%}) | {name} | {run['seconds'] / 60:.1f} | "
                f"{run['stages'].get('pretrain', float('nan')):.0f} | {run['teacher']:.2%} | "
                f"{run['promoted']} {run['accuracy']:.2%} | {ratio} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repo", type=Path, default=ROOT, help="a repository where the demo ran")
    parser.add_argument("--shares", type=float, nargs="+", default=[0.01, 0.10])
    parser.add_argument("--idx-dir", type=Path, default=DEBIAN_IDX_DIR)
    parser.add_argument("--work", type=Path, default=ROOT / "bench_out" / "dropin")
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "dropin.md")
    parser.add_argument("--results", type=Path, default=ROOT / "docs" / "dropin.json")
    args = parser.parse_args()
    command = "python bench/dropin.py " + " ".join(sys.argv[1:])
    results = []
    for share in args.shares:
        repo = args.work / f"share{round(100 * share)}"
        if repo.exists():
            sh(["rm", "-rf", str(repo)], args.work)
        copy_repo(args.repo, repo)
        n = round(share * 20_000)
        new_images(args.idx_dir, n, args.work / f"new{round(100 * share)}", seed=1)
        sh([sys.executable, "-m", "pipeline", "add-unlabeled", str(args.work / f"new{round(100 * share)}"),
            "--into", "dropin"], repo)  # fmt: skip
        set_warm_start(repo, True)
        warm = repro(repo)
        print(f"{n} new, warm start: {warm}", flush=True)
        set_warm_start(repo, False)
        scratch = repro(repo)
        print(f"{n} new, from scratch: {scratch}", flush=True)
        results.append({"share": share, "new": n, "warm": warm, "scratch": scratch})
        args.results.write_text(json.dumps(results, indent=1))
    write_doc(args.doc, markdown(results, command))
    print(markdown(results, command))


if __name__ == "__main__":
    main()
