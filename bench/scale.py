"""Time and peak memory of `prepare`, `pseudolabel` and one student epoch as the unlabeled pool grows
(docs/scale.md).

For each pool size (default 10k, 100k and 1M images) a folder under --out gets the demo's 40 labeled images,
--test test images and N synthetic unlabeled PNG files: Fashion-MNIST training images, cycled, with the copy
number written into two corner pixels so that every file's bytes differ (prepare counts identical files once).
Then the real stage scripts run on it, each in its own process, timed, with its peak RSS from wait4:

- `prepare` (decode, hash and store every image);
- `pseudolabel --round r1` with a randomly initialised encoder and teacher (the weights do not change the
  work), OOD method as in params.yaml;
- `student --round r1` for one epoch of the pool: ceil(N / student.batch_unlabeled) steps.

    python bench/scale.py                      # 10k, 100k, 1M: about 25 minutes, 2 GB of disk at 1M
    python bench/scale.py --sizes 10000 --keep-others        # measure 10k again, keep the other rows
    python bench/scale.py --sizes 2000 --out /tmp/scale --doc /tmp/scale.md --results /tmp/scale.json  # smoke
    python bench/scale.py --set pseudolabel.propagation.weight=0 --doc ... --results ...  # another setting

Each size's result goes to --results (committed beside the doc); the table shows every size there.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml
from PIL import Image
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, doc_header, write_doc  # noqa: E402

from pipeline import artifacts  # noqa: E402
from pipeline.checkpoint import save_model, save_round_model  # noqa: E402
from pipeline.config.common import TEACHER_ROUND  # noqa: E402
from pipeline.config.full import load_params  # noqa: E402
from pipeline.data.demo import CLASSES, DEBIAN_IDX_DIR, export_demo, load_fashion_mnist  # noqa: E402
from pipeline.data.store import load_prepared  # noqa: E402
from pipeline.models import build_classifier, build_encoder, encoder_architecture  # noqa: E402


def write_pool(folder: Path, n: int, images: np.ndarray, labels: np.ndarray) -> pd.DataFrame:
    """N unlabeled PNGs in shards of 1000: image i % 60000 with its copy number i // 60000 in two pixels."""
    rows = []
    for i in tqdm(range(n), desc=f"writing {n:,} images", unit="img", mininterval=2.0):
        img = images[i % len(images)].copy()
        img[0, 0], img[0, 1] = (i // len(images)) % 256, (i // len(images)) // 256
        rel = f"shard_{i // 1000:04d}/synthetic_{i:07d}.png"
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img, mode="L").save(folder / rel)
        rows.append((rel, CLASSES[labels[i % len(images)]]))
    return pd.DataFrame(rows, columns=["path", "label"])


def size_params(out: Path, n: int, overrides: list[str]) -> Path:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for item in overrides:  # KEY=VALUE, a dotted key of params.yaml and a YAML value
        key, value = item.split("=", 1)
        *parents, last = key.split(".")
        section = params
        for name in parents:
            section = section[name]
        if last not in section:
            raise SystemExit(f"--set {item}: params.yaml has no key {key}")
        section[last] = yaml.safe_load(value)
    data = {"labeled": "data/labeled", "unlabeled": "data/unlabeled", "test": "data/test",
            "analysis": "data/analysis.csv"}  # fmt: skip
    for key in params["paths"]:
        params["paths"][key] = str(out / data.get(key, key))
    params["checkpoints"]["dir"] = str(out / ".checkpoints")
    params["rounds"] = {"r1": {"prev": TEACHER_ROUND}}
    params["mlflow"]["experiment"] = "scale-benchmark"
    one_pass = math.ceil(n / params["student"]["batch_unlabeled"])  # one pass over the pool
    params["student"].update(epochs=1, min_steps=one_pass, max_steps=one_pass)
    path = out / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def random_models(params_file: Path) -> None:
    """A randomly initialised SSL encoder and teacher where pretrain and teacher would write theirs."""
    params = load_params(params_file)
    store = load_prepared(params.paths.prepared)
    torch.manual_seed(params.seed)
    arch = encoder_architecture(params.model, params.data.channels, params.data.image_size)
    encoder = build_encoder(arch, store.stats["mean"], store.stats["std"])
    save_model(artifacts.encoder(params.paths), encoder, arch, config=params.model_dump(), epochs=0)
    arch = replace(arch, num_classes=len(store.classes))
    model = build_classifier(arch, store.stats["mean"], store.stats["std"])
    model.encoder.load_state_dict(encoder.state_dict())
    out = artifacts.round_model(params.paths, TEACHER_ROUND)
    save_round_model(out, model, arch, store.classes, TEACHER_ROUND, params.model_dump())


def run_stage(stage: list[str], params_file: Path, env: dict[str, str]) -> dict[str, float]:
    """One stage script in its own process: wall seconds and peak RSS (MiB) from wait4."""
    cmd = [sys.executable, str(ROOT / "stages" / f"{stage[0]}.py"), "--params", str(params_file), *stage[1:]]
    log = params_file.parent / f"{stage[0]}.log"
    start = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)  # the child's own rusage, which Popen.wait does not give
        proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{log.read_text()[-3000:]}")
    return {"seconds": seconds, "peak_rss_mib": usage.ru_maxrss / 1024}


def measure(n: int, args, train: tuple[np.ndarray, np.ndarray]) -> dict:
    out = args.out / f"pool_{n}"
    shutil.rmtree(out, ignore_errors=True)
    export_demo(out / "data", args.idx_dir, labels_per_class=4, n_unlabeled=0, n_test=args.test, seed=0)
    write_start = time.perf_counter()
    analysis = write_pool(out / "data" / "unlabeled", n, *train)
    analysis.to_csv(out / "data" / "analysis.csv", index=False)
    write_seconds = time.perf_counter() - write_start
    params_file = size_params(out, n, args.set)
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "PYTHONPATH": str(ROOT),
           "MLFLOW_TRACKING_URI": f"sqlite:///{out / 'mlflow.db'}", "PIPELINE_ID": f"scale-{n}"}  # fmt: skip
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    result = {"n": n, "date": time.strftime("%Y-%m-%d"), "commit": commit.stdout.strip(),
              "write_seconds": write_seconds}  # fmt: skip
    result["prepare"] = run_stage(["prepare"], params_file, env)
    random_models(params_file)
    result["pseudolabel"] = run_stage(["pseudolabel", "--round", "r1"], params_file, env)
    result["student"] = run_stage(["student", "--round", "r1"], params_file, env)
    result["student"]["steps"] = load_params(params_file).student.max_steps
    result["store_mib"] = (out / "prepared" / "images.npy").stat().st_size / 2**20
    print(json.dumps(result), flush=True)
    if not args.keep:
        shutil.rmtree(out / "data" / "unlabeled")  # the synthetic files are most of the disk
    return result


def markdown(results: list[dict], args, command: str) -> str:
    lines = [
        *doc_header("Scale: prepare, pseudolabel and one student epoch as the unlabeled pool grows", command),
        "Synthetic pools of 28 x 28 grayscale PNGs (Fashion-MNIST images, cycled, each file's bytes "
        f"unique), the demo's 40 labeled images, {args.test:,} test images, `params.yaml` of the commit "
        "otherwise. Each stage ran as its own process; peak RSS is that process's (MiB), from wait4. The "
        "student ran one epoch of the pool (steps = pool / `student.batch_unlabeled`).",
        "",
        "| unlabeled | store MiB | prepare s | prepare RSS | pseudolabel s | pseudolabel RSS | student steps "
        "| student s | student RSS | measured |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in results:
        p, q, s = r["prepare"], r["pseudolabel"], r["student"]
        lines.append(
            f"| {r['n']:,} | {r['store_mib']:,.0f} | {p['seconds']:,.1f} | {p['peak_rss_mib']:,.0f} | "
            f"{q['seconds']:,.1f} | {q['peak_rss_mib']:,.0f} | {s['steps']:,} | {s['seconds']:,.1f} | "
            f"{s['peak_rss_mib']:,.0f} | {r.get('date', '')} {r.get('commit', '')} |"
        )
    if len(results) > 1:
        small, large = results[0], results[-1]
        ratios = ", ".join(
            f"{stage} {large[stage]['peak_rss_mib'] / small[stage]['peak_rss_mib']:.2f}x"
            for stage in ("prepare", "pseudolabel", "student")
        )
        lines += ["", f"Peak RSS at {large['n']:,} against {small['n']:,}: {ratios} (target: within 1.5x)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--test", type=int, default=1000, help="test images")
    parser.add_argument("--idx-dir", type=Path, default=DEBIAN_IDX_DIR)
    parser.add_argument("--out", type=Path, default=ROOT / "bench_out" / "scale")
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "scale.md")
    parser.add_argument("--keep", action="store_true", help="keep the synthetic image files")
    parser.add_argument("--results", type=Path, default=ROOT / "docs" / "scale.json")
    parser.add_argument(
        "--keep-others", action="store_true", help="keep the other sizes' results in --results"
    )
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a params.yaml value")
    args = parser.parse_args()
    command = "python bench/scale.py"  # the table may hold sizes of several runs: the default makes them all
    command += "".join(f" --set {item}" for item in args.set)
    train = load_fashion_mnist(args.idx_dir)["train"]
    kept = json.loads(args.results.read_text()) if args.keep_others and args.results.is_file() else []
    results = [r for r in kept if r["n"] not in args.sizes]
    for n in args.sizes:
        results = sorted([*results, measure(n, args, train)], key=lambda r: r["n"])
        args.results.write_text(json.dumps(results, indent=1) + "\n")
        write_doc(args.doc, markdown(results, args, command))
    print(markdown(results, args, command))


if __name__ == "__main__":
    main()
