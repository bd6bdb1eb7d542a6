"""What the benchmark scripts share: running the real stage scripts on a params file, and the supervised-only
reference (the pipeline's CNN trained from scratch on the labeled images alone)."""

from __future__ import annotations

import dataclasses
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
NOTES_MARK = "<!-- notes: written by hand, kept when the benchmark rewrites the table above -->"

from pipeline.config.full import Params  # noqa: E402
from pipeline.data.store import Prepared  # noqa: E402
from pipeline.inference import predict  # noqa: E402
from pipeline.models import build_classifier, encoder_architecture  # noqa: E402
from pipeline.runtime import LoopSetup, seed_everything  # noqa: E402
from pipeline.training.teacher import fit_teacher  # noqa: E402


def stage_env(pipeline_id: str) -> dict[str, str]:
    """The stages' environment: the repo importable, no albumentations update check, one MLflow parent run."""
    return {
        **os.environ,
        "NO_ALBUMENTATIONS_UPDATE": "1",
        "PYTHONPATH": str(ROOT),
        "PIPELINE_ID": pipeline_id,
    }


class StageFailed(RuntimeError):
    """A stage script exited with an error; `reason` is the last line it printed."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


def run_stages(params_file: Path, stages: list[list[str]], env: dict[str, str]) -> dict[str, float]:
    """Run stage scripts (["pretrain"], ["pseudolabel", "--round", "r1"], ...) in order; seconds per stage.
    Raises StageFailed when one fails."""
    seconds = {}
    for stage, *args in stages:
        start = time.perf_counter()
        cmd = [sys.executable, str(ROOT / "stages" / f"{stage}.py"), "--params", str(params_file), *args]
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            lines = proc.stderr.strip().splitlines() or ["(no message)"]
            raise StageFailed(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}", lines[-1])
        seconds["/".join([stage, *args[1:]])] = time.perf_counter() - start
    return seconds


def pipeline_stages(rounds: int, prepare: bool = False) -> list[list[str]]:
    """[prepare,] pretrain, teacher, pseudolabel + student per round, evaluate."""
    stages = [["prepare"]] if prepare else []
    stages += [["pretrain"], ["teacher"]]
    for k in range(1, rounds + 1):
        stages += [["pseudolabel", "--round", f"r{k}"], ["student", "--round", f"r{k}"]]
    return stages + [["evaluate"]]


def scratch_teacher(params: Params, store: Prepared, steps: int, lr: float) -> float:
    """Test accuracy of the CNN trained from random initialisation on the labeled images only: encoder and
    head together, the teacher's weak augmentation, no SSL, no unlabeled images."""
    seed_everything(params.seed)
    arch = encoder_architecture(params.model, params.data.channels, params.data.image_size)  # the stem too
    arch = dataclasses.replace(arch, num_classes=len(store.classes))
    model = build_classifier(arch, store.stats["mean"], store.stats["std"])
    cfg = params.teacher.model_copy(
        update={
            "encoder_lr_scale": 1.0,
            "freeze_encoder_below": 0,
            "min_steps": steps,
            "max_steps": steps,
            "lr": lr,
        }
    )
    fit_teacher(
        model=model,
        images=store.images,
        labeled=store.split("labeled"),
        cfg=cfg,
        setup=LoopSetup(params.data.image_size, params.seed, log=lambda metrics, step: None),
    )
    test = store.split("test")
    logits, _ = predict(model, store.images, test.index)
    return float((logits.argmax(1) == test.labels).mean())


def doc_header(title: str, command: str, setup: str | None = None) -> list[str]:
    """The first lines of a benchmark doc: its title, the date, the machine with `setup` (default: the torch
    version, no GPU; "" for none) and the command that measured it."""
    setup = f"torch {torch.__version__}, no GPU" if setup is None else setup
    machine = (
        f"{platform.node() or 'this machine'} ({os.cpu_count()} CPU cores{', ' + setup if setup else ''})"
    )
    return [
        f"# {title}",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} on {machine} with:",
        "",
        f"    {command}",
        "",
    ]


def write_doc(path: Path, generated: str) -> None:
    """Write the measured part of a benchmark doc, keeping the hand-written notes below NOTES_MARK."""
    notes = ""
    if path.is_file() and NOTES_MARK in (old := path.read_text()):
        notes = old.split(NOTES_MARK, 1)[1]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(generated.rstrip("\n") + "\n\n" + NOTES_MARK + (notes or "\n"))
