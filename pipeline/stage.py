"""What every stage script does: read its arguments, validate its sections of params.yaml, check the
compute device and the tracking server; and, for the training stages, the torchrun and resume scaffolding."""

from __future__ import annotations

import argparse
import errno
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from pipeline.compute import pin_cpu_kernels, resolve_compute
from pipeline.config.base import ConfigError, load_params
from pipeline.config.common import Common
from pipeline.distributed import SINGLE, World, init_world
from pipeline.resume import ResumePoint, stage_resume_point
from pipeline.runtime import LogFn, LoopSetup, seed_everything
from pipeline.tracking import (
    StageRun,
    TrackingUnreachable,
    check_tracking_uri,
    project_root,
    stage_run,
    tracking_uri,
)

P = TypeVar("P", bound=Common)


def start(
    description: str,
    kind: type[P],
    *,
    with_round: bool = False,
    check: Callable[[P], Any] | None = None,
    torchrun: bool = True,
    argv: list[str] | None = None,
) -> tuple[P, str | None]:
    """Parse `--params` (and `--round`), validate the stage's sections of the params file (`kind`; `check`
    for more), check that its compute device is here and that the MLflow tracking server answers, and seed
    every generator. Exit with a clear message when one fails, before the stage reads data or trains, or when
    a stage that runs in one process (`torchrun=False`) was started by torchrun."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    if with_round:
        parser.add_argument("--round", required=True, help="round name from params.yaml rounds, e.g. r1")
    args = parser.parse_args(argv)
    if not torchrun and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        sys.exit(f"error: {parser.prog} runs in one process; start it without torchrun")
    try:
        params = load_params(args.params, kind)
        pin_cpu_kernels(params.compute)  # before anything computes: each library reads its pin once
        if with_round:
            params.round_config(args.round)  # validates the round and its overrides up front
        if check is not None:
            check(params)
        resolve_compute(params.compute)  # compute.device: cuda without a GPU stops here
        check_tracking_uri(tracking_uri(project_root()))
    except (ConfigError, TrackingUnreachable) as err:
        sys.exit(f"error: {err}")
    seed_everything(params.seed)
    return params, getattr(args, "round", None)


Train = Callable[[LoopSetup], Any]


def loop_setup(params: Common, resume: ResumePoint | None, log: LogFn, world: World = SINGLE) -> LoopSetup:
    """The training loops' setup from the common sections: image size, seed, compute."""
    return LoopSetup(params.data.image_size, params.seed, log, resume, world, resolve_compute(params.compute))


def training_stage(
    params: Common,
    stage: str,
    round_name: str | None,
    *,
    inputs: Iterable[Path],
    logged: dict[str, Any],
    train: Train,
    save: Callable[[StageRun], None],
) -> None:
    """Run a training stage in this process or as one of several under torchrun: every process trains
    (`train(setup)`), rank 0 alone logs to MLflow and `save`s the outputs. The resume point is keyed by the
    params and `inputs` and removed once the outputs are saved."""
    compute = resolve_compute(params.compute)
    world = init_world(compute)  # one process, or one of several under torchrun
    key = f"{stage}@{round_name}" if round_name and stage != "teacher" else stage
    resume = stage_resume_point(params, key, inputs, params.checkpoints.every_steps, world)
    setup = loop_setup(params, resume, lambda metrics, step: None, world)
    if not world.main:  # another torchrun process: train its share of each batch, write nothing
        train(setup)
        return world.close()
    with stage_run(params, stage, round_name, logged, system_metrics=True) as run:
        train(replace(setup, log=run.log))
        run.sync()  # a tracking server that went down: wait for it here, before the outputs are written
        save(run)
    resume.clear()
    world.close()


def run_stage(main: Callable[[], Any]) -> None:
    """Run a stage script's `main`. A full disk stops it with one line, not a traceback: every output and
    resume point is written to a temporary name and renamed (pipeline.files.atomic_write; prepare's store in
    a side folder), so the previous ones are still there, and the stage's MLflow run ends FAILED."""
    try:
        main()
    except TrackingUnreachable as err:  # the server went down mid-stage and stayed down (pipeline.outage)
        sys.exit(f"error: {err}")
    except OSError as err:
        if err.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        where = f" writing {err.filename}" if err.filename else ""
        sys.exit(
            f"error: no space left on device{where}. Free some space and run the stage again: its previous "
            "outputs and resume points are as they were."
        )
