"""Benchmark the SSL methods on the demo data at one shared budget; writes docs/ssl_benchmark.md.

For each method: pretrain `--epochs` epochs over the labeled + unlabeled demo images, then report
  - kNN accuracy (k=20, cosine) of the encoder features, 40 labeled images vs the 10 000 test images,
  - linear-probe accuracy with 40 labels (the demo's) and 1000 labels (100 per class from the training set),
  - the pipeline's test accuracy when the method feeds the teacher: teacher (r0) and the last of `--rounds`
    noisy-student rounds, run with the real stage scripts and `params.yaml` otherwise unchanged,
  - wall time of pretraining and of the whole run.

Two reference rows: a random (untrained) encoder, and a teacher trained from scratch on the same 40 labels
(the same CNN, encoder and head trained together with the teacher's weak augmentation, no SSL, no unlabeled
images), which the SSL-pretrained teachers have to beat.

Needs the demo's prepared store (`make demo`, or `make data && dvc repro prepare`). Usage:

    python bench/ssl_methods.py                      # every method, 12 epochs, 1 round
    python bench/ssl_methods.py --methods simclr byol --epochs 4 --rounds 0
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402  # noqa: E402
    ROOT,
    StageFailed,
    doc_header,
    pipeline_stages,
    run_stages,
    scratch_teacher,
    stage_env,
    write_doc,
)

from pipeline.checkpoint import load_encoder  # noqa: E402
from pipeline.config.full import load_params  # noqa: E402
from pipeline.data.demo import DEBIAN_IDX_DIR, load_fashion_mnist, split_indices  # noqa: E402
from pipeline.data.store import load_prepared  # noqa: E402
from pipeline.datasets import to_tensor  # noqa: E402
from pipeline.metrics import knn_accuracy, linear_probe_accuracy  # noqa: E402
from pipeline.models import Architecture, build_encoder  # noqa: E402
from pipeline.runtime import seed_everything  # noqa: E402
from pipeline.ssl.registry import METHODS  # noqa: E402


def method_params(base: dict, method: str, epochs: int, rounds: int, out: Path) -> dict:
    """params.yaml for one method: its own output paths, the chosen method and epochs, `rounds` rounds."""
    params = json.loads(json.dumps(base))
    params["pretrain"].update(method=method, epochs=epochs)
    for key in ("encoder", "rounds", "pseudolabels", "metrics", "plots"):
        params["paths"][key] = str(out / key)
    params["checkpoints"]["dir"] = str(out / ".checkpoints")
    params["rounds"] = {f"r{k}": {"prev": f"r{k - 1}"} for k in range(1, rounds + 1)}
    params["mlflow"]["experiment"] = "ssl-benchmark"
    return params


def probe_sets(idx_dir: Path, seed: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Images (N, 1, 28, 28) in [0, 1] and labels: 40 and 1000 labeled training images, 10 000 test."""
    data = load_fashion_mnist(idx_dir)
    (train_x, train_y), (test_x, test_y) = data["train"], data["test"]
    sets = {"test": (to_tensor(test_x[..., None]), torch.as_tensor(test_y, dtype=torch.long))}
    for n_per_class, split_seed in ((4, seed), (100, seed + 1)):
        labeled, _ = split_indices(train_y, n_per_class, 0, split_seed)
        sets[f"{10 * n_per_class}"] = (
            to_tensor(train_x[labeled][..., None]),
            torch.as_tensor(train_y[labeled], dtype=torch.long),
        )
    return sets


@torch.no_grad()
def features(encoder, images: torch.Tensor, batch: int = 1000) -> torch.Tensor:
    encoder.eval()
    return torch.cat([encoder(images[i : i + batch]) for i in range(0, len(images), batch)])


def check_demo_labeled(store, sets) -> None:
    """The 40 probe images must be the demo's labeled images, or kNN and probe-40 measure something else."""
    demo = {bytes(store.images[i]) for i in store.split("labeled").index}
    probe = {bytes((x * 255).round().to(torch.uint8).numpy()) for x in sets["40"][0]}
    assert demo == probe, "the prepared store's labeled images are not the demo's 40 (seed or data changed?)"


def representation_scores(encoder, sets) -> dict[str, float]:
    """kNN (k=20) and linear-probe accuracy on the test set, all labels in Fashion-MNIST's own numbering.

    The 40 images of sets["40"] are the demo's labeled images (the same seeded split); their labels come
    from the IDX files, not from the store, whose class numbers follow the folder names.
    """
    test_x, test_y = sets["test"]
    test_f = features(encoder, test_x)
    train_f = features(encoder, sets["40"][0])
    scores = {"knn": knn_accuracy(train_f, sets["40"][1], test_f, test_y, k=20)}
    for n in ("40", "1000"):
        x, y = sets[n]
        scores[f"probe_{n}"] = linear_probe_accuracy(features(encoder, x), y, test_f, test_y)
    return scores


def markdown(rows: list[dict], args: argparse.Namespace, command: str) -> str:
    lines = [
        *doc_header("SSL methods on Fashion-MNIST: one shared budget", command),
        f"Budget: {args.epochs} epochs of pretraining over the 20 040 demo images (40 labeled + 20 000 "
        "unlabeled), batch 256, the default model (width 16, depth 1) and `params.yaml` otherwise unchanged. "
        "kNN: k=20, cosine, the 40 labeled images vs the 10 000 test images. Linear probes: softmax "
        "regression "
        "on frozen features of 40 (the demo's) or 1000 (100 per class) training images, tested on the 10 000 "
        f"test images. Pipeline: teacher (linear head on the frozen encoder, 40 labels) and {args.rounds} "
        "noisy-student "
        "round(s), test accuracy. The first row's teacher is trained from scratch (random initialisation, "
        f"encoder and head together, {args.scratch_steps} steps at lr {args.scratch_lr}, weak augmentation) "
        "on the same 40 labels, with no SSL and no unlabeled images. Single seed (0).",
        "",
        "| method | kNN acc | probe 40 | probe 1000 | teacher (r0) | last student | pretrain s | total s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    share_keys = ("knn", "probe_40", "probe_1000", "teacher", "final")
    for r in rows:  # "–" where a row has no such value (the reference row has no pretraining)
        if "failed" in r:
            lines.append(f"| {r['method']} | failed: {r['failed']} |" + " |" * 6)
            continue
        shares = [f"{r[k]:.2%}" if k in r else "–" for k in share_keys]
        seconds = [f"{r[k]:.0f}" if k in r else "–" for k in ("pretrain_s", "total_s")]
        lines.append("| " + " | ".join([r["method"], *shares, *seconds]) + " |")
    return "\n".join(lines).replace("%", " %") + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--methods", nargs="+", default=["all"], help="methods to run, or 'all'")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "bench_out" / "ssl")
    parser.add_argument("--scratch-steps", type=int, default=1500, help="steps of the from-scratch teacher")
    parser.add_argument("--scratch-lr", type=float, default=0.1, help="peak lr of the from-scratch teacher")
    parser.add_argument("--idx-dir", type=Path, default=DEBIAN_IDX_DIR)
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "ssl_benchmark.md")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="keep the rows of --out/results.json and run only missing methods",
    )
    args = parser.parse_args()
    methods = list(METHODS) if args.methods == ["all"] else args.methods
    command = "python bench/ssl_methods.py " + " ".join(a for a in sys.argv[1:] if a != "--resume")

    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    params = load_params(ROOT / "params.yaml")
    store = load_prepared(ROOT / params.paths.prepared)
    sets = probe_sets(args.idx_dir, params.seed)
    check_demo_labeled(store, sets)

    results = args.out / "results.json"
    rows = json.loads(results.read_text()) if args.resume and results.is_file() else []
    rows = [r for r in rows if "failed" not in r]  # a failed method is tried again
    if not rows:
        seed_everything(params.seed)
        arch = Architecture(params.data.channels, params.model.width, params.model.depth)
        random_encoder = build_encoder(arch, store.stats["mean"], store.stats["std"])
        rows = [{"method": "none (random encoder)", **representation_scores(random_encoder, sets)}]
        print(rows[-1], flush=True)
        start = time.perf_counter()
        scratch = scratch_teacher(params, store, args.scratch_steps, args.scratch_lr)
        rows[-1].update(teacher=scratch, total_s=time.perf_counter() - start)
        print(f"teacher from scratch, {args.scratch_steps} steps: {scratch:.2%}", flush=True)
    done = {r["method"] for r in rows}
    for method in [m for m in methods if m not in done]:
        out = args.out / method
        out.mkdir(parents=True, exist_ok=True)
        params_file = out / "params.yaml"
        params_file.write_text(yaml.safe_dump(method_params(base, method, args.epochs, args.rounds, out)))
        start = time.perf_counter()
        try:
            seconds = run_stages(
                params_file, pipeline_stages(args.rounds), stage_env(f"ssl-bench-{method}-{time.time()}")
            )
        except StageFailed as err:  # e.g. a loss that became NaN: the row says so, the others still run
            print(err, flush=True)
            rows.append({"method": method, "failed": err.reason})
            results.write_text(json.dumps(rows, indent=1))
            write_doc(args.doc, markdown(rows, args, command))
            continue
        encoder, _ = load_encoder(out / "encoder" / "encoder.pt")
        evaluation = json.loads((out / "metrics" / "eval.json").read_text())
        last = f"r{args.rounds}"
        rows.append({
            "method": method, **representation_scores(encoder, sets),
            "teacher": evaluation["r0"]["test/accuracy"], "final": evaluation[last]["test/accuracy"],
            "pretrain_s": seconds["pretrain"], "total_s": time.perf_counter() - start,
        })  # fmt: skip
        print(rows[-1], flush=True)
        results.write_text(json.dumps(rows, indent=1))
        write_doc(args.doc, markdown(rows, args, command))
    print(markdown(rows, args, command))


if __name__ == "__main__":
    main()
