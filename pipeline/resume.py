"""Resume points of the training loops, so a killed stage picks up where it stopped.

A resume point holds everything the rest of the run depends on: model, optimizer (and SSL method) state, the
step, every random generator (torch, numpy, python and each albumentations Compose) and the logged history.
The data order is a function of the seed, so the step is enough to skip the batches already seen. A run
resumed from a point ends with the same weights, byte for byte on CPU, as a run that was never stopped.

Resume points live in `checkpoints.dir` (`.checkpoints/`), not in the stage's outputs: DVC deletes a stage's
outputs before it runs. Each is valid only for the key it was written with (a hash of params.yaml and of
the stage's input files), is written atomically, and is removed once the stage has saved its output.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.distributed as dist

from pipeline.config.common import Common
from pipeline.distributed import SINGLE, World
from pipeline.files import atomic_write

if TYPE_CHECKING:
    import albumentations as A


def resume_key(params: dict, stage: str, inputs: Iterable[Path]) -> str:
    """sha256 of the params, the stage name and the bytes of its input files."""
    digest = hashlib.sha256(json.dumps([params, stage], sort_keys=True, default=str).encode())
    for path in sorted(Path(p) for p in inputs):
        digest.update(path.name.encode())
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def _composes(transform: Any) -> list[Any]:
    """Every albumentations node of a Compose tree (each has its own generators), depth first."""
    nodes = [transform]
    for child in getattr(transform, "transforms", []):
        if hasattr(child, "random_generator"):  # a node; ColorJitter's `transforms` are plain functions
            nodes += _composes(child)
    return nodes


def augmentation_state(transforms: list[A.Compose]) -> list:
    """The generators of every albumentations node of `transforms`."""
    return [
        [(node.random_generator.bit_generator.state, node.py_random.getstate()) for node in _composes(t)]
        for t in transforms
    ]


def set_augmentation_state(state: list, transforms: list[A.Compose]) -> None:
    for transform, nodes in zip(transforms, state, strict=True):
        for node, (numpy_state, python_state) in zip(_composes(transform), nodes, strict=True):
            node.random_generator.bit_generator.state = numpy_state
            node.py_random.setstate(python_state)


def rng_state(transforms: list[A.Compose], augmentation: list | None = None) -> dict[str, Any]:
    """The state of every random generator a training loop draws from. `augmentation`: the albumentations
    part as the process that augments saw it after the last batch (pipeline.datasets), when not this one's."""
    return {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
        "albumentations": augmentation if augmentation is not None else augmentation_state(transforms),
    }


def set_rng_state(state: dict[str, Any], transforms: list[A.Compose]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    set_augmentation_state(state["albumentations"], transforms)


class History:
    """The metrics a loop logged, kept in its resume points so a resumed run logs the whole curve again."""

    def __init__(self, log, rows: list[tuple[dict[str, float], int]] | None = None):
        self._log, self.rows = log, []
        for metrics, step in rows or []:
            self(metrics, step)

    def __call__(self, metrics: dict[str, float], step: int) -> None:
        self.rows.append((metrics, step))
        self._log(metrics, step)


class ResumePoint:
    """The resume point of one stage: `<directory>/<name>.pt`, valid for `key` only. Under torchrun each
    process keeps its own, `<name>-rank<r>of<n>.pt` (its random generators differ), and the one before it
    (`.prev.pt`): the processes resume from the latest step they all saved (`load`)."""

    def __init__(
        self,
        directory: Path | str,
        name: str,
        key: str,
        every: int,
        enabled: bool = True,
        world: World = SINGLE,
    ):
        self.directory, self.name, self.world = Path(directory), name, world
        rank = f"-rank{world.rank}of{world.size}" if world.size > 1 else ""
        self.path = self.directory / f"{name}{rank}.pt"
        self.key, self.every, self.enabled = key, every, enabled

    @property
    def previous(self) -> Path:
        return self.path.with_suffix(".prev.pt")

    def derived(self, part: str) -> ResumePoint:
        """The resume point of one part of the stage (e.g. one of two candidate models): its own file and
        key."""
        name = f"{self.name}-{part}"
        return ResumePoint(self.directory, name, f"{self.key}:{part}", self.every, self.enabled, self.world)

    def due(self, step: int, total: int) -> bool:
        """Whether to write a resume point after `step` steps (or epochs) of `total`; never after the last."""
        return self.enabled and step % self.every == 0 and step < total

    def _read(self, path: Path, say: bool) -> dict[str, Any] | None:
        if not path.is_file():
            return None
        state = torch.load(path, map_location="cpu", weights_only=False)
        if state.get("key") != self.key:
            if say:
                print(
                    f"{path}: written for other params or inputs; starting from the beginning",
                    file=sys.stderr,
                )
            return None
        return state

    def load(self) -> dict[str, Any] | None:
        """The saved state, or None when there is none, it was written for another key, or it is disabled.
        Under torchrun every process calls it at the same point, and all get the state of the latest step
        each of them saved (a process killed while writing may lack the newest), or all get None."""
        if not self.enabled:
            return None
        state = self._read(self.path, say=self.world.main)
        if self.world.size > 1:
            states = {s["step"]: s for s in (state, self._read(self.previous, say=False)) if s is not None}
            steps: list[set[int] | None] = [None] * self.world.size
            dist.all_gather_object(steps, set(states))
            common = set.intersection(*steps)
            state = states[max(common)] if common else None
            if state is None and any(steps) and self.world.main:
                print(f"{self.path}: the {self.world.size} processes share no saved step; starting from the "
                      "beginning", file=sys.stderr)  # fmt: skip
        if state is not None:
            print(f"resuming from step {state['step']} of {self.path}", file=sys.stderr)
        return state

    def save(self, state: dict[str, Any]) -> None:
        buffer = io.BytesIO()
        torch.save({"key": self.key, **state}, buffer)
        if self.world.size > 1 and self.path.is_file():
            os.replace(self.path, self.previous)  # kept until this one is whole: the processes may need it
        atomic_write(self.path, lambda p: p.write_bytes(buffer.getvalue()))

    def save_state(
        self,
        step: int,
        modules: dict[str, Any],
        transforms: list[A.Compose],
        history: History,
        augmentation: list | None = None,
    ) -> None:
        """Write the resume point after `step` steps: `modules` (models, optimizer: anything with a
        state_dict), the random generators (`augmentation`: see rng_state) and the history."""
        modules_state = {name: module.state_dict() for name, module in modules.items()}
        rng = rng_state(transforms, augmentation)
        self.save({"step": step, "modules": modules_state, "rng": rng, "history": history.rows})

    def restore(self, saved: dict[str, Any], modules: dict[str, Any], transforms: list[A.Compose]) -> None:
        """Load a state from `load()` into `modules` and the generators. Call it after the data loaders'
        iterators exist: creating one draws from the global generator, as it did in the unbroken run."""
        for name, module in modules.items():
            module.load_state_dict(saved["modules"][name])
        set_rng_state(saved["rng"], transforms)

    def clear(self) -> None:
        """Remove the resume point and those of its parts (`derived`), and under torchrun those of every
        process on this machine (rank 0 clears, once the outputs are saved)."""
        if self.enabled:
            for path in [self.directory / f"{self.name}.pt", *self.directory.glob(f"{self.name}-*.pt")]:
                path.unlink(missing_ok=True)


def stage_resume_point(
    params: Common, stage: str, inputs: Iterable[Path | str], every: int, world: World = SINGLE
) -> ResumePoint:
    """The resume point of `stage` (e.g. "student@r2") for these params and input files; under torchrun,
    this process's."""
    key = resume_key(params.model_dump(exclude={"checkpoints"}), stage, [Path(p) for p in inputs])
    return ResumePoint(params.checkpoints.dir, stage.replace("@", "-"), key, every, world=world)
