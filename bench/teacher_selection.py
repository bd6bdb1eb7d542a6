"""How well cross-fitting picks the teacher: each candidate's held-out accuracy on the labeled images against
its test accuracy when trained on all of them. Prints a table and writes --results (JSON). The kernels are
pinned as `compute.cpu_kernels` says, as in the stages.

Runs on folders that bench/pseudo_labels.py or bench/datasets_benchmark.py left behind (each with its
params.yaml, prepared store and SSL encoder); params.yaml of this commit fills what a folder's lacks.

    python bench/teacher_selection.py bench_out/pseudo_labels/labels40-seed{0,1,2}
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT  # noqa: E402

from pipeline.checkpoint import load_encoder  # noqa: E402
from pipeline.compute import pin_cpu_kernels  # noqa: E402
from pipeline.config.base import validate  # noqa: E402
from pipeline.config.full import Params  # noqa: E402
from pipeline.data.store import load_prepared  # noqa: E402
from pipeline.data.validation import split_validation  # noqa: E402
from pipeline.inference import predict  # noqa: E402
from pipeline.models import Architecture, build_classifier  # noqa: E402
from pipeline.runtime import LoopSetup, seed_everything  # noqa: E402
from pipeline.training.teacher import (  # noqa: E402
    cross_fit_folds,
    fit_candidate,
    fit_teacher_by_cross_fitting,
    teacher_candidates,
)


def merged(base: dict, kept: dict) -> dict:
    """`base` with every key of `kept` set, recursively."""
    for key, value in kept.items():
        nested = isinstance(value, dict) and isinstance(base.get(key), dict)
        base[key] = merged(base[key], value) if nested else value
    return base


def setting_params(folder: Path) -> Params:
    kept = yaml.safe_load((folder / "params.yaml").read_text())
    kept.get("teacher", {}).pop("cross_fit_folds", None)  # this commit's setting
    return validate(Params, merged(yaml.safe_load((ROOT / "params.yaml").read_text()), kept))


def measure(folder: Path) -> dict:
    params = setting_params(folder)
    pin_cpu_kernels(params.compute)  # as the teacher stage does, before anything computes
    cfg, data = params.teacher, load_prepared(params.paths.prepared)
    labeled, validation = split_validation(data.split("labeled"), params.validation, params.seed)
    if validation is not None:
        raise SystemExit(f"{folder}: has a validation set; cross-fitting runs only without one")
    encoder, ssl = load_encoder(Path(params.paths.encoder) / "encoder.pt")
    arch = Architecture(**{**ssl["arch"], "num_classes": len(data.classes), "dropout": cfg.dropout})
    seed_everything(params.seed)
    model = build_classifier(arch, data.stats["mean"], data.stats["std"])
    initial = copy.deepcopy(model.state_dict())
    model.encoder.load_state_dict(encoder.state_dict())
    pretrained = copy.deepcopy(model.state_dict())
    setup = LoopSetup(params.data.image_size, params.seed, lambda metrics, step: None)
    start = time.perf_counter()
    kept, held_out = fit_teacher_by_cross_fitting(
        model=model, images=data.images, labeled=labeled, folds=cross_fit_folds(cfg, labeled.labels), cfg=cfg,
        setup=setup, initial=initial,
    )  # fmt: skip
    seconds, test, accuracy = time.perf_counter() - start, data.split("test"), {}
    for mode, settings in teacher_candidates(cfg).items():
        fit_candidate(
            mode, model=model, images=data.images, labeled=labeled, settings=settings, setup=setup, part=mode,
            weights=initial if mode == "scratch" else pretrained, desc=mode,
        )  # fmt: skip
        logits, _ = predict(model, data.images, test.index)
        accuracy[mode] = float(np.mean(logits.argmax(axis=1) == test.labels))
    return {"setting": folder.name, "kept": kept, "held_out": held_out, "test": accuracy, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("folders", type=Path, nargs="+")
    parser.add_argument("--results", type=Path, default=ROOT / "docs" / "teacher_selection.json")
    args = parser.parse_args()
    rows = [measure(folder) for folder in args.folders]
    args.results.write_text(json.dumps(rows, indent=1) + "\n")
    print("| setting | kept | held out: probe / finetune / scratch | test: probe / finetune / scratch | s |")
    print("| --- | --- | --- | --- | ---: |")
    for row in rows:
        cells = [" / ".join(f"{100 * row[key][m]:.1f}" for m in row[key]) for key in ("held_out", "test")]
        print(f"| {row['setting']} | {row['kept']} | {cells[0]} % | {cells[1]} % | {row['seconds']:.0f} |")


if __name__ == "__main__":
    main()
