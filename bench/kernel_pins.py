"""Whether `compute.cpu_kernels: avx2` gives the same bytes on every x86-64 CPU, and what it costs in speed
(docs/kernel_pins.md; every machine's measurement is kept in docs/kernel_pins.json).

On this machine, alternating `native` and `avx2`, `--repeats` times:
- `dvc repro` of the whole pipeline on the test fixture (tests/fixtures/data, the tests' tiny schedules): its
  wall seconds and the md5 of every stage output in dvc.lock (encoder, models, pseudo-label tables, metrics);
- compute alone: `--steps` teacher steps (batch 64, 28 px, params.yaml's network) on fixed random images in a
  fresh process, seconds and the sha256 of the weights.

The doc compares the `avx2` outputs across every machine in the json: the pin holds if they are equal.

    python bench/kernel_pins.py                     # adds this machine to docs/kernel_pins.json and the doc
    python bench/kernel_pins.py --repeats 1 --json /tmp/k.json --doc /tmp/k.md
    python bench/kernel_pins.py --render            # the doc again from the json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from common import ROOT, doc_header, write_doc

sys.path.insert(0, str(ROOT / "tests"))
from pipeline_repo import make_repo, run  # noqa: E402  (the tests' fixture repository, reused)

from pipeline.compute import KERNEL_PINS  # noqa: E402

KERNELS = ("native", "avx2")

COMPUTE = """
import hashlib, io, sys, time
import numpy as np, torch
from pipeline.compute import pin_cpu_kernels
from pipeline.config.full import load_params
from pipeline.data.store import Split
from dataclasses import replace
from pipeline.models import build_classifier, encoder_architecture
from pipeline.runtime import LoopSetup, seed_everything
from pipeline.training.teacher import fit_teacher
params = load_params(sys.argv[1])
pin_cpu_kernels(params.compute.model_copy(update={"cpu_kernels": sys.argv[2]}))
steps = int(sys.argv[3])
rng = np.random.default_rng(0)
images = rng.integers(0, 256, (640, 28, 28, 1), dtype=np.uint8)
index = np.arange(640)
split = Split(index=index, labels=index % 10, sha256=index.astype(str), paths=index.astype(str))
seed_everything(0)
arch = replace(encoder_architecture(params.model, channels=1, image_size=28), num_classes=10)
model = build_classifier(arch)
cfg = params.teacher.model_copy(update={"min_steps": steps, "max_steps": steps, "batch_size": 64})
setup = LoopSetup(image_size=28, seed=0, log=lambda metrics, step: None)
start = time.perf_counter()
fit_teacher(model=model, images=images, labeled=split, cfg=cfg, setup=setup, frozen=False)
seconds = time.perf_counter() - start
buffer = io.BytesIO()
torch.save(model.state_dict(), buffer)
print(torch.backends.cpu.get_cpu_capability(), seconds, hashlib.sha256(buffer.getvalue()).hexdigest())
"""


def unpinned(env: dict[str, str]) -> dict[str, str]:
    """`env` without the kernel pins, so that params.yaml's `compute.cpu_kernels` decides."""
    return {k: v for k, v in env.items() if k not in KERNEL_PINS}


def cpu_info() -> dict[str, str]:
    """The CPU's model name and its vector extensions, from lscpu."""
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    flags = fields.get("Flags", "").split()
    vector = [f for f in flags if f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile")]
    return {"model": fields.get("Model name", "?").strip(), "vector_flags": " ".join(vector)}


def repro(kernels: str, work: Path) -> dict:
    repo = work / f"repo-{kernels}"
    env = unpinned(make_repo(repo, {"compute": {"cpu_kernels": kernels}}))
    start = time.perf_counter()
    run(["dvc", "repro"], repo, env)
    seconds = time.perf_counter() - start
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    outs = {o["path"]: o["md5"] for stage in lock["stages"].values() for o in stage.get("outs", [])}
    return {"seconds": seconds, "outs": outs}


def compute(kernels: str, steps: int) -> dict:
    cmd = [sys.executable, "-c", COMPUTE, str(ROOT / "params.yaml"), kernels, str(steps)]
    env = {**unpinned(dict(os.environ)), "PYTHONPATH": str(ROOT), "NO_ALBUMENTATIONS_UPDATE": "1"}
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT, env=env).stdout.split()
    return {"capability": out[-3], "seconds": float(out[-2]), "sha256": out[-1]}


def measure(repeats: int, steps: int) -> dict:
    runs = {k: {"repro": [], "compute": []} for k in KERNELS}
    for r in range(repeats):
        for kernels in KERNELS if r % 2 == 0 else KERNELS[::-1]:  # alternate which goes first
            with tempfile.TemporaryDirectory() as tmp:
                runs[kernels]["repro"].append(repro(kernels, Path(tmp)))
            runs[kernels]["compute"].append(compute(kernels, steps))
            print(f"repeat {r + 1}/{repeats} {kernels}: done", file=sys.stderr)
    return {"date": time.strftime("%Y-%m-%d"), "cpu": cpu_info(), "steps": steps, "runs": runs}


def digest(values: list[str]) -> str:
    """One short hash for a set of output hashes; 'differ' when the repeats disagreed."""
    return values[0][:12] if len(set(values)) == 1 else "differ between repeats"


def outs_digest(repros: list[dict]) -> str:
    return digest(
        [hashlib.sha256(json.dumps(r["outs"], sort_keys=True).encode()).hexdigest() for r in repros]
    )


def median_s(runs: list[dict]) -> float:
    return statistics.median(x["seconds"] for x in runs)


def avx2_hashes(machine: dict) -> tuple[str, str]:
    runs = machine["runs"]["avx2"]
    return outs_digest(runs["repro"]), digest([x["sha256"] for x in runs["compute"]])


def render(machines: list[dict], command: str) -> str:
    lines = doc_header("CPU kernel pins: same bytes across CPUs, and the speed cost", command, "")
    lines += [
        "Each row is one machine (2 CPU cores). *repro*: `dvc repro` of the whole pipeline on the test"
        " fixture (median seconds; its outputs' md5 in dvc.lock, hashed together). *compute*: teacher steps"
        " alone (median seconds; sha256 of the weights). The pin holds across CPUs when the `avx2` hashes of"
        " all rows are equal.",
        "",
        "| date | CPU | vector flags | kernels | capability | repro s | repro outputs | compute s | weights"
        " |",
        "| --- | --- | --- | --- | --- | ---: | --- | ---: | --- |",
    ]
    for m in machines:
        for kernels in KERNELS:
            r = m["runs"][kernels]
            cells = [
                m["date"], m["cpu"]["model"], m["cpu"]["vector_flags"], kernels,
                r["compute"][0]["capability"],
                f"{median_s(r['repro']):.1f}", outs_digest(r["repro"]), f"{median_s(r['compute']):.1f}",
                digest([x["sha256"] for x in r["compute"]]),
            ]  # fmt: skip
            lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Speed cost of the pin on each machine (avx2 / native, medians):", ""]
    for m in machines:
        native, avx2 = m["runs"]["native"], m["runs"]["avx2"]
        repro_ratio = median_s(avx2["repro"]) / median_s(native["repro"])
        compute_ratio = median_s(avx2["compute"]) / median_s(native["compute"])
        lines.append(
            f"- {m['cpu']['model']} ({m['date']}): repro {repro_ratio:.2f}, compute {compute_ratio:.2f}"
        )
    same = len({avx2_hashes(m) for m in machines}) == 1
    kinds = len({m["cpu"]["vector_flags"] for m in machines})
    verdict = "are the same on every machine" if same else "differ"
    summary = f"{len(machines)} machines, {kinds} kinds of vector flags: the `avx2` outputs {verdict}."
    if len(machines) == 1:
        summary = "One machine so far: nothing to compare its `avx2` outputs with yet."
    lines += ["", summary, ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--steps", type=int, default=300, help="teacher steps of the compute measurement")
    parser.add_argument("--json", type=Path, default=ROOT / "docs" / "kernel_pins.json")
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "kernel_pins.md")
    parser.add_argument("--render", action="store_true", help="only rewrite the doc from the json")
    args = parser.parse_args()
    machines = json.loads(args.json.read_text()) if args.json.is_file() else []
    if not args.render:
        machines.append(measure(args.repeats, args.steps))
        args.json.write_text(json.dumps(machines, indent=1) + "\n")
    write_doc(args.doc, render(machines, "python bench/kernel_pins.py " + " ".join(sys.argv[1:])))
    print(args.doc.read_text())


if __name__ == "__main__":
    main()
