"""Each backbone's size and training speed (docs/backbones.md): the student loop against a bare loop.

For every backbone of pipeline.backbones, at 28 px grayscale and 64 px RGB (the cifar stem at both sizes;
`model.stem: auto` picks it up to 32 px):
- parameters of the encoder;
- training img/s of `training.student.fit_student` (strong augmentation on whole batches, dropout, stochastic
  depth, soft pseudo-labels, entropy term) on random images, and of a bare loop of the same model and batch on
  one random tensor (forward, cross-entropy, backward, SGD); their ratio is the loop's overhead.

Each row runs in its own process, one after the other, on the device `--device` names (bf16 and
torch.compile with --precision / --compile: the GPU rows). Each device's rows are kept in
docs/backbones_<device>.json; the doc shows every device on record.

    python bench/backbones.py
    python bench/backbones.py --steps 3 --doc /tmp/backbones.md          # quick
    python bench/backbones.py --device cuda --precision bf16 --compile --doc docs/backbones_gpu.md
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, doc_header, write_doc  # noqa: E402

from pipeline.backbones import BACKBONES  # noqa: E402
from pipeline.compute import resolve_compute  # noqa: E402
from pipeline.config.common import ComputeConfig  # noqa: E402
from pipeline.config.full import load_params  # noqa: E402
from pipeline.data.store import Split  # noqa: E402
from pipeline.models import Architecture, build_classifier  # noqa: E402
from pipeline.pseudo.targets import PseudoLabeled  # noqa: E402
from pipeline.runtime import LoopSetup, seed_everything  # noqa: E402
from pipeline.training.student import fit_student  # noqa: E402

SETTINGS = [(28, 1), (64, 3)]  # (pixels, channels)
CLASSES, IMAGES = 10, 1024


def model_of(backbone: str, channels: int, cfg) -> torch.nn.Module:
    arch = Architecture(channels, cfg.width, cfg.depth, CLASSES, cfg.dropout, cfg.stochastic_depth, backbone)
    return build_classifier(arch)


def measure(backbone: str, size: int, channels: int, args) -> dict:
    """One row: the student loop and the bare loop, `args.steps` steps each, after one step of warm-up."""
    params = load_params(ROOT / "params.yaml")
    seed_everything(params.seed)
    compute = resolve_compute(
        ComputeConfig(device=args.device, precision=args.precision, compile=args.compile)
    )
    cfg = params.student.model_copy(update={"batch_labeled": args.labeled, "batch_unlabeled": args.unlabeled})
    batch = args.labeled + args.unlabeled
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (IMAGES, size, size, channels), dtype=np.uint8)
    labels = np.arange(IMAGES) % CLASSES
    labeled = Split(np.arange(100), labels[:100], np.array([""] * 100), np.array([""] * 100))
    rest = np.arange(100, IMAGES)
    pseudo = PseudoLabeled(
        rest, np.eye(CLASSES, dtype=np.float32)[labels[rest]], np.ones(len(rest), np.float32)
    )
    setup = LoopSetup(size, params.seed, lambda metrics, step: None, compute=compute)
    seconds = {}
    for steps in (1, 1 + args.steps):  # the difference: `args.steps` steps without start-up
        model = model_of(backbone, channels, cfg)
        length = cfg.model_copy(update={"min_steps": steps, "max_steps": steps})
        start = time.perf_counter()
        fit_student(model=model, images=images, labeled=labeled, pseudo=pseudo, cfg=length, setup=setup)
        seconds[steps] = time.perf_counter() - start
    loop = args.steps * batch / (seconds[1 + args.steps] - seconds[1])

    model = model_of(backbone, channels, cfg).to(compute.device).train()
    x = torch.rand(batch, channels, size, size, device=compute.device).contiguous(
        memory_format=torch.channels_last
    )
    y = torch.randint(0, CLASSES, (batch,), device=compute.device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    net = compute.compiled(model)
    for i in range(1 + args.steps):
        if i == 1:
            synchronize(compute.device)
            start = time.perf_counter()
        with compute.autocast():
            loss = F.cross_entropy(net(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    synchronize(compute.device)
    bare = args.steps * batch / (time.perf_counter() - start)
    encoder_params = sum(p.numel() for p in model.encoder.parameters())
    return {"backbone": backbone, "size": size, "channels": channels, "params": encoder_params,
            "loop_images_per_s": loop, "bare_images_per_s": bare}  # fmt: skip


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def table(rows: list[dict], title: str) -> list[str]:
    head = "| backbone | parameters | px | channels | student loop img/s | bare loop img/s | loop / bare |"
    lines = [f"## {title}", "", head, "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(
            f"| {r['backbone']} | {r['params'] / 1e6:.2f} M | {r['size']} | {r['channels']} | "
            f"{r['loop_images_per_s']:,.0f} | {r['bare_images_per_s']:,.0f} | "
            f"{r['loop_images_per_s'] / r['bare_images_per_s']:.2f} |"
        )
    return lines + [""]


def markdown(runs: dict[str, dict], command: str) -> str:
    """The doc from every run on record (docs/backbones_<device>.json): the CPU's and the GPU's."""
    lines = doc_header("Backbones: size and training speed", command, "")
    drop = load_params(ROOT / "params.yaml").student.stochastic_depth
    lines += [
        "The student loop (`fit_student`: strong augmentation of whole batches, dropout, stochastic depth "
        f"{drop}, entropy term) against a bare loop of the same model and batch on one random tensor "
        "(forward, cross-entropy, backward, SGD), after one step of warm-up; the cifar stem at both sizes "
        "(`model.stem: auto` picks it up to 32 px). Parameters: the encoder, without the head. Each row ran "
        "in its own process.",
        "",
    ]
    for device, run in runs.items():
        a = run["args"]
        title = (f"{device}: {run['machine']}, {a['precision']}{', torch.compile' if a['compile'] else ''}, "
                 f"{a['labeled']} + {a['unlabeled']} images per step, {a['steps']} steps")  # fmt: skip
        lines += table(run["rows"], title)
    if "cuda" not in runs:
        lines += ["No GPU was lent to the session that measured this: the GPU rows (bf16, torch.compile) "
                  "come from `bench/gpu.sh` on a GPU machine.", ""]  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backbones", nargs="+", default=list(BACKBONES), choices=BACKBONES)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--labeled", type=int, default=16, help="labeled images per step")
    parser.add_argument("--unlabeled", type=int, default=48, help="pseudo-labeled images per step")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "backbones.md")
    parser.add_argument("--row", help=argparse.SUPPRESS)  # backbone,size,channels: one row, in this process
    args = parser.parse_args()
    if args.row:
        backbone, size, channels = args.row.split(",")
        print(json.dumps(measure(backbone, int(size), int(channels), args)))
        return
    rows = []
    for backbone in args.backbones:
        for size, channels in SETTINGS:
            cmd = [sys.executable, __file__, *sys.argv[1:], "--row", f"{backbone},{size},{channels}"]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
            r = rows[-1]
            print(f"{backbone} {size} px: loop {r['loop_images_per_s']:.0f} img/s, bare "
                  f"{r['bare_images_per_s']:.0f} img/s", flush=True)  # fmt: skip
    machine = torch.cuda.get_device_name() if args.device == "cuda" else f"{os.cpu_count()} CPU cores"
    run = {"args": {k: v for k, v in vars(args).items() if k not in ("doc", "row")}, "machine": machine,
           "rows": rows}  # fmt: skip
    args.doc.with_name(f"backbones_{args.device}.json").write_text(json.dumps(run, indent=1) + "\n")
    runs = {
        p.stem.split("_", 1)[1]: json.loads(p.read_text())
        for p in sorted(args.doc.parent.glob("backbones_*.json"))
    }
    command = "python bench/backbones.py " + " ".join(sys.argv[1:])
    write_doc(args.doc, markdown(runs, command.strip()))


if __name__ == "__main__":
    main()
