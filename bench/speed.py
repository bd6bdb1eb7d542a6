"""Throughput of the pipeline's training and inference loops against a bare PyTorch loop (docs/speed.md).

Each measurement runs in its own process (so its peak RSS is its own) on the demo's prepared store
(`make demo` or `dvc repro prepare` first):

- student: `training.student.fit_student` for `--steps` steps at the params.yaml batch sizes (labeled +
  unlabeled images, strong augmentation as `student.strong.backend` says, dropout, stochastic depth),
  against a bare loop of the same model, batch and precision on tensors made beforehand (forward,
  cross-entropy, backward, SGD). Data: the same loaders and augmentation alone, without the model.
- pretrain: `ssl.pretrain.pretrain` for one epoch of `--steps` batches (the method's views made image by
  image with albumentations), against the method's loss on random view tensors (forward, backward, SGD).
- teacher: `training.teacher.fit_teacher` on the labeled images, against the same model and batch on
  random tensors, the encoder frozen or fine-tuned as the teacher has it.
- inference: `pipeline.inference.predict` over `--infer` images of the store against the bare `model(x)` under
  `torch.no_grad()` on tensors made beforehand, at the pseudolabel batch size.

Every loop runs where params.yaml `compute` says, or as --device / --precision / --compile say, with the CPU
kernels `compute.cpu_kernels` pins; the bare loops run on the same device in the same precision (autocast),
timed after a CUDA synchronize. Each loop, the pipeline's and the bare one, runs WARMUP_STEPS untimed steps
first. The pretrain and teacher rows are measured with both augmentation backends.

    python bench/speed.py
    python bench/speed.py --steps 20 --infer 5000 --doc /tmp/speed.md    # quick
    python bench/speed.py --device cuda --precision bf16 --doc docs/speed_gpu.md   # on a GPU
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, doc_header, write_doc  # noqa: E402

from pipeline.compute import Compute, pin_cpu_kernels, resolve_compute  # noqa: E402
from pipeline.config.full import load_params  # noqa: E402
from pipeline.data.store import load_prepared  # noqa: E402
from pipeline.datasets import endless_loader  # noqa: E402
from pipeline.inference import predict  # noqa: E402
from pipeline.models import Architecture, build_classifier, build_encoder  # noqa: E402
from pipeline.pseudo.targets import PseudoLabeled  # noqa: E402
from pipeline.runtime import (
    LoopSetup,  # noqa: E402
    seed_everything,  # noqa: E402
)
from pipeline.ssl.pretrain import pretrain  # noqa: E402
from pipeline.ssl.registry import build_method  # noqa: E402
from pipeline.training.student import fit_student, student_data  # noqa: E402
from pipeline.training.teacher import encoder_frozen, fit_teacher  # noqa: E402

# Steps run untimed before each measured loop, the pipeline's and the bare one's alike: the first steps
# create the kernels' primitives and the thread pool, a fixed second or so that a 60-step run would count.
WARMUP_STEPS = 5


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def setup(params_file: Path):
    params = load_params(params_file)
    seed_everything(params.seed)
    store = load_prepared(ROOT / params.paths.prepared)
    cfg = params.student
    arch = Architecture(params.data.channels, cfg.width, cfg.depth, len(store.classes), cfg.dropout,
                        cfg.stochastic_depth)  # fmt: skip
    return params, store, cfg, arch


def compute_of(params) -> Compute:
    return resolve_compute(params.compute)


def quiet_setup(params) -> LoopSetup:
    """The loops' setup from params.yaml, logging nothing."""
    return LoopSetup(
        params.data.image_size, params.seed, lambda metrics, step: None, compute=compute_of(params)
    )


def synchronize(compute: Compute) -> None:
    """Wait for the GPU's queued work, so a timer stopped after it counts that work."""
    if compute.device.type == "cuda":
        torch.cuda.synchronize(compute.device)


def student_pseudo(store, num_classes: int) -> PseudoLabeled:
    pool = store.split("unlabeled")
    rng = np.random.default_rng(0)
    targets = rng.dirichlet(np.ones(num_classes), len(pool.index)).astype(np.float32)
    return PseudoLabeled(pool.index, targets, np.ones(len(pool.index), np.float32))


def measure_student(params_file: Path, steps: int) -> dict:
    params, store, base, arch = setup(params_file)
    pseudo = student_pseudo(store, arch.num_classes)

    def train(n: int) -> dict:
        cfg = base.model_copy(update={"min_steps": n, "max_steps": n})
        model = build_classifier(arch, store.stats["mean"], store.stats["std"])
        return fit_student(model=model, images=store.images, labeled=store.split("labeled"), pseudo=pseudo,
                           cfg=cfg, setup=quiet_setup(params))  # fmt: skip

    train(WARMUP_STEPS)
    start = time.perf_counter()
    last = train(steps)
    seconds = time.perf_counter() - start
    return {"images_per_s": steps * (base.batch_labeled + base.batch_unlabeled) / seconds, "seconds": seconds,
            "data_wait_share": last["time/data_wait_share"], "peak_rss_mib": peak_rss_mib(),
            "loader_workers": base.loader_workers, "backend": base.strong.backend}  # fmt: skip


def measure_student_data(params_file: Path, steps: int) -> dict:
    """The student's two loaders alone, as fit_student builds them, plus the augmentation of whole batches
    when `student.strong.backend` is tensor: everything of a step but the model."""
    params, store, cfg, arch = setup(params_file)
    pseudo = student_pseudo(store, arch.num_classes)
    seed, labeled = params.seed, store.split("labeled")
    lab, unl, _, on_batch = student_data(
        store.images, labeled, pseudo, cfg.strong, params.data.image_size, seed
    )
    start = time.perf_counter()
    lab_loader = endless_loader(lab, cfg.batch_labeled, steps * cfg.batch_labeled, seed)
    unl_loader = endless_loader(unl, cfg.batch_unlabeled, steps * cfg.batch_unlabeled, seed + 1)
    for (xl, _), (xu, _) in zip(lab_loader, unl_loader, strict=True):
        if on_batch:
            on_batch[0](xl), on_batch[1](xu)
    return {"seconds": time.perf_counter() - start, "peak_rss_mib": peak_rss_mib()}


def measure_student_bare(params_file: Path, steps: int) -> dict:
    """The same model, batch and precision in a few lines: random tensors, forward, CE, backward, SGD."""
    params, store, cfg, arch = setup(params_file)
    model = build_classifier(arch, store.stats["mean"], store.stats["std"]).train()
    return bare_classifier_loop(model, cfg.batch_labeled + cfg.batch_unlabeled, params, steps)


def bare_classifier_loop(model: torch.nn.Module, batch: int, params, steps: int) -> dict:
    """`steps` of forward, cross-entropy, backward and SGD on one random channels-last batch, updating the
    model's trainable parameters: the bare loop a training loop is compared with."""
    compute, side = compute_of(params), params.data.image_size
    model.to(compute.device)
    x = torch.rand(batch, params.data.channels, side, side, device=compute.device)
    x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, model.arch.num_classes, (batch,), device=compute.device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(trainable, lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    net = compute.compiled(model)
    for i in range(WARMUP_STEPS + steps):
        if i == WARMUP_STEPS:
            synchronize(compute)
            start = time.perf_counter()
        with compute.autocast():
            logits = net(x)
        loss = F.cross_entropy(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    synchronize(compute)
    seconds = time.perf_counter() - start
    return {"images_per_s": steps * batch / seconds, "seconds": seconds, "peak_rss_mib": peak_rss_mib()}


def measure_teacher(params_file: Path, steps: int, backend: str | None = None) -> dict:
    """fit_teacher as the stage runs it on the store's labeled images (weak augmentation as
    `teacher.augment_backend` says, or `backend`)."""
    params, store, _, _ = setup(params_file)
    backend = backend or params.teacher.augment_backend
    arch = Architecture(params.data.channels, params.model.width, params.model.depth, len(store.classes))
    labeled = store.split("labeled")
    frozen = encoder_frozen(params.teacher, labeled.labels, arch.num_classes)

    def train(n: int) -> None:
        cfg = params.teacher.model_copy(update={"min_steps": n, "max_steps": n, "augment_backend": backend})
        model = build_classifier(arch, store.stats["mean"], store.stats["std"])
        fit_teacher(model=model, images=store.images, labeled=labeled, cfg=cfg, setup=quiet_setup(params))

    train(WARMUP_STEPS)
    start = time.perf_counter()
    train(steps)
    seconds = time.perf_counter() - start
    return {"images_per_s": steps * params.teacher.batch_size / seconds, "seconds": seconds,
            "peak_rss_mib": peak_rss_mib(), "frozen": frozen, "backend": backend}  # fmt: skip


def measure_teacher_bare(params_file: Path, steps: int) -> dict:
    """The teacher's model and batch on random tensors, the encoder frozen or not as fit_teacher has it."""
    params, store, _, _ = setup(params_file)
    cfg = params.teacher
    arch = Architecture(params.data.channels, params.model.width, params.model.depth, len(store.classes))
    model = build_classifier(arch, store.stats["mean"], store.stats["std"]).train()
    frozen = encoder_frozen(cfg, store.split("labeled").labels, arch.num_classes)
    if frozen:
        model.encoder.requires_grad_(False).eval()
    return bare_classifier_loop(model, cfg.batch_size, params, steps)


def measure_pretrain(params_file: Path, steps: int, backend: str | None = None) -> dict:
    """pipeline.ssl.pretrain for one epoch of `steps` batches, no kNN monitor; views as
    `pretrain.views_backend` says, or `backend`."""
    params, store, _, _ = setup(params_file)
    backend = backend or params.pretrain.views_backend
    cfg = params.pretrain.model_copy(update={"epochs": 1, "min_steps": 1, "views_backend": backend})
    arch = Architecture(params.data.channels, params.model.width, params.model.depth)
    pool = store.split("unlabeled").index

    def train(n: int) -> None:
        encoder = build_encoder(arch, store.stats["mean"], store.stats["std"])
        index = pool[: n * cfg.batch_size]
        pretrain(encoder=encoder, images=store.images, index=index, cfg=cfg, monitor=None,
                 setup=quiet_setup(params))  # fmt: skip

    train(WARMUP_STEPS)
    start = time.perf_counter()
    train(steps)
    seconds = time.perf_counter() - start
    return {"images_per_s": steps * cfg.batch_size / seconds, "seconds": seconds,
            "peak_rss_mib": peak_rss_mib(), "backend": backend}  # fmt: skip


def measure_pretrain_bare(params_file: Path, steps: int) -> dict:
    """The pretrain method's loss on random view tensors: forward of every view, backward, SGD."""
    params, store, _, _ = setup(params_file)
    cfg = params.pretrain
    arch = Architecture(params.data.channels, params.model.width, params.model.depth)
    encoder = build_encoder(arch, store.stats["mean"], store.stats["std"]).train()
    method = build_method(cfg, encoder, params.data.channels, steps).train()
    compute = compute_of(params)
    encoder.to(compute.device)
    method.to(compute.device)
    trainable = [p for p in [*encoder.parameters(), *method.parameters()] if p.requires_grad]
    opt = torch.optim.SGD(trainable, lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    side, batch = params.data.image_size, cfg.batch_size
    views = [torch.rand(batch, params.data.channels, side, side, device=compute.device)
             .contiguous(memory_format=torch.channels_last) for _ in range(method.n_views)]  # fmt: skip
    for step in range(WARMUP_STEPS + steps):
        if step == WARMUP_STEPS:
            synchronize(compute)
            start = time.perf_counter()
        with compute.autocast():
            loss, _ = method.loss(encoder, views, step)
        opt.zero_grad(set_to_none=True)
        loss.float().backward()
        opt.step()
        method.after_step(encoder, step, steps)
    synchronize(compute)
    seconds = time.perf_counter() - start
    return {"images_per_s": steps * batch / seconds, "seconds": seconds, "peak_rss_mib": peak_rss_mib()}


def measure_inference(params_file: Path, n: int) -> dict:
    params, store, _, arch = setup(params_file)
    model = build_classifier(arch, store.stats["mean"], store.stats["std"])
    index = store.split("unlabeled").index[:n]
    start = time.perf_counter()
    predict(model, store.images, index, params.pseudolabel.batch_size, compute_of(params))
    seconds = time.perf_counter() - start
    return {"images_per_s": len(index) / seconds, "seconds": seconds, "peak_rss_mib": peak_rss_mib()}


def measure_inference_bare(params_file: Path, n: int) -> dict:
    params, store, _, arch = setup(params_file)
    compute = compute_of(params)
    model = build_classifier(arch, store.stats["mean"], store.stats["std"]).eval().to(compute.device)
    batch, side = params.pseudolabel.batch_size, params.data.image_size
    x = torch.rand(batch, params.data.channels, side, side, device=compute.device)
    x = x.contiguous(memory_format=torch.channels_last)
    done, start = 0, time.perf_counter()
    with torch.no_grad(), compute.autocast():
        while done < n:
            model(x[: min(batch, n - done)])
            done += min(batch, n - done)
    synchronize(compute)
    seconds = time.perf_counter() - start
    return {"images_per_s": n / seconds, "seconds": seconds, "peak_rss_mib": peak_rss_mib()}


MEASUREMENTS = {
    "pretrain": measure_pretrain,
    "pretrain_other": lambda params_file, steps: measure_pretrain(
        params_file, steps, other_backend(load_params(params_file).pretrain.views_backend)
    ),
    "pretrain_bare": measure_pretrain_bare,
    "teacher": measure_teacher,
    "teacher_other": lambda params_file, steps: measure_teacher(
        params_file, steps, other_backend(load_params(params_file).teacher.augment_backend)
    ),
    "teacher_bare": measure_teacher_bare,
    "student": measure_student,
    "student_data": measure_student_data,
    "student_bare": measure_student_bare,
    "inference": measure_inference,
    "inference_bare": measure_inference_bare,
}


def other_backend(backend: str) -> str:
    """The augmentation backend params.yaml does not use, measured beside it."""
    return "albumentations" if backend == "tensor" else "tensor"


def run_one(name: str, args) -> dict:
    """One measurement in a fresh process; its JSON result."""
    amount = args.infer if name.startswith("inference") else args.steps
    cmd = [sys.executable, __file__, "--one", name, "--amount", str(amount), "--params", str(args.params)]
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def markdown(results: dict, args, command: str) -> str:
    params = load_params(args.params)
    st, pl = params.student, params.pseudolabel
    ratio = {
        k: results[k]["images_per_s"] / results[f"{k.removesuffix('_other')}_bare"]["images_per_s"]
        for k in ("pretrain", "pretrain_other", "teacher", "teacher_other", "student")
    }
    train_ratio = ratio["student"]
    infer_ratio = results["inference"]["images_per_s"] / results["inference_bare"]["images_per_s"]
    wait = results["student"]["data_wait_share"]
    augment_share = results["student_data"]["seconds"] / results["student"]["seconds"]
    pt, frozen = params.pretrain, results["teacher"]["frozen"]
    made = {"tensor": "whole batches", "albumentations": "image by image"}
    rows = [
        (f"pretrain ({pt.method}, views {made[results[k]['backend']]})", k, "pretrain_bare",
         f"{pt.batch_size}")
        for k in ("pretrain", "pretrain_other")
    ] + [
        (f"teacher ({'frozen encoder' if frozen else 'fine-tuned'}, weak augmentation "
         f"{made[results[k]['backend']]})", k, "teacher_bare", f"{params.teacher.batch_size}")
        for k in ("teacher", "teacher_other")
    ] + [
        ("student training", "student", "student_bare", f"{st.batch_labeled} + {st.batch_unlabeled}"),
        ("inference (pseudolabel)", "inference", "inference_bare", f"{pl.batch_size}"),
    ]  # fmt: skip
    compute = params.compute
    if compute.device == "cpu" or not torch.cuda.is_available():
        where = f"{torch.get_num_threads()} threads, no GPU"
    else:
        where = torch.cuda.get_device_name()
    setup = (f"torch {torch.__version__}, {where}, {compute.cpu_kernels} CPU kernels, {compute.precision}"
             f"{', torch.compile' if compute.compile else ''}, channels_last")  # fmt: skip
    lines = [
        *doc_header("Speed: the pipeline's loops against a bare PyTorch loop", command, setup),
        f"Student width {st.width}, depth {st.depth}, {params.data.image_size} px, {params.data.channels} "
        f"channel(s); {args.steps} training steps, {args.infer:,} images for inference. Each row ran in its "
        "own process; peak RSS is that process's.",
        "",
        "| loop | batch | pipeline img/s | bare img/s | ratio | pipeline peak RSS | bare peak RSS |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label, ours, bare, batch in rows:
        a, b = results[ours], results[bare]
        lines.append(f"| {label} | {batch} | {a['images_per_s']:,.0f} | {b['images_per_s']:,.0f} | "
                     f"**{a['images_per_s'] / b['images_per_s']:.2f}** | {a['peak_rss_mib']:,.0f} | "
                     f"{b['peak_rss_mib']:,.0f} |")  # fmt: skip
    lines += [
        "",
        f"Data in student training (`student.strong.backend: {results['student']['backend']}`, "
        f"`student.loader_workers: {results['student']['loader_workers']}`): the loop waited on its next "
        f"batch or augmented it for **{wait:.0%}** of its time (timed inside fit_student). "
        f"Making the batches alone (reading, strong augmentation, collation, in one process) takes "
        f"{results['student_data']['seconds']:.1f} s, {augment_share:.0%} of the loop's "
        f"{results['student']['seconds']:.1f} s. Peak RSS in MiB.",
        "",
        f"Targets (issue 7): ratio >= 0.9 (pretrain {ratio['pretrain']:.2f}, or "
        f"{ratio['pretrain_other']:.2f} with {results['pretrain_other']['backend']}; teacher "
        f"{ratio['teacher']:.2f}, or {ratio['teacher_other']:.2f} with "
        f"{results['teacher_other']['backend']}; "
        f"student {train_ratio:.2f}, inference {infer_ratio:.2f}); data "
        f"waiting < 10 % ({wait:.0%}).",
    ]
    return "\n".join(lines) + "\n"


def with_compute(args) -> Path:
    """The params file the measurements read: --params, or a copy of it with --device, --precision and
    --compile in its `compute` section."""
    if not (args.device or args.precision or args.compile):
        return args.params
    params = yaml.safe_load(args.params.read_text())
    given = {"device": args.device, "precision": args.precision, "compile": args.compile or None}
    params["compute"].update({key: value for key, value in given.items() if value is not None})
    out = ROOT / "bench_out" / "speed" / "params.yaml"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(params))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=60, help="training steps per measurement")
    parser.add_argument("--infer", type=int, default=20_000, help="images for the inference measurement")
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "speed.md")
    parser.add_argument("--device", choices=["cpu", "cuda", "auto"], help="instead of compute.device")
    parser.add_argument("--precision", choices=["fp32", "bf16"], help="instead of compute.precision")
    parser.add_argument("--compile", action="store_true", help="compute.compile: true")
    parser.add_argument("--one", choices=sorted(MEASUREMENTS), help=argparse.SUPPRESS)
    parser.add_argument("--amount", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:  # a child process: one measurement, JSON on the last line
        print(json.dumps(MEASUREMENTS[args.one](args.params, args.amount)))
        return
    command = "python bench/speed.py " + " ".join(sys.argv[1:])
    args.params = with_compute(args)
    pin_cpu_kernels(load_params(args.params).compute)  # as the stages; the measurements inherit it
    results = {}
    for name in MEASUREMENTS:
        results[name] = run_one(name, args)
        print(name, results[name], flush=True)
    write_doc(args.doc, markdown(results, args, command))
    print(markdown(results, args, command))


if __name__ == "__main__":
    main()
