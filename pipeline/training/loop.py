"""The one training-loop skeleton of pretrain, teacher and student.

A loop supplies its batches and its step (batch -> loss and values to log); `run_steps` does the rest the
same way for all three: the learning rate of the step, the finite check, the optimizer step, logging on a
cadence and progress. `Resumable` holds what a loop resumes from and writes its resume points, and
`on_device` moves the modules to the compute device and back to the CPU when the loop ends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from tqdm import tqdm

from pipeline.compute import Compute
from pipeline.resume import History, ResumePoint
from pipeline.runtime import LogFn, check_finite

Step = Callable[[int, Any], tuple[torch.Tensor, dict[str, Any]]]


def sgd(groups: list[dict[str, Any]], lr: float, weight_decay: float) -> torch.optim.SGD:
    """SGD with Nesterov momentum 0.9; each group may carry an `lr_scale` of the scheduled lr."""
    return torch.optim.SGD(groups, lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)


class Resumable:
    """A loop's resume point: the state it starts from (step, history) and the resume points it writes.

    `modules`: everything with a state_dict the run depends on (models, optimizer, augmenters);
    `transforms`: the albumentations pipelines whose generators are saved too."""

    def __init__(self, resume: ResumePoint | None, modules: dict[str, Any], transforms: list, log: LogFn):
        self.resume, self.modules, self.transforms = resume, modules, transforms
        self.saved = resume.load() if resume else None
        self.start: int = self.saved["step"] if self.saved else 0
        self.history = History(log, self.saved["history"] if self.saved else None)

    def restore(self) -> None:
        """Load the saved state, if any. Call it after the data loaders' iterators exist: creating one draws
        from the global generator, as it did in the unbroken run."""
        if self.saved:
            self.resume.restore(self.saved, self.modules, self.transforms)

    def save(self, done: int, total: int, augmentation: list | None = None) -> None:
        """A resume point after `done` steps (or epochs) of `total`, when one is due."""
        if self.resume and self.resume.due(done, total):
            self.resume.save_state(done, self.modules, self.transforms, self.history, augmentation)


@contextmanager
def on_device(modules: list[torch.nn.Module], compute: Compute) -> Iterator[None]:
    """The modules on `compute`'s device for the loop, and on the CPU after it (also when it fails)."""
    for module in modules:
        module.to(compute.device)
    try:
        yield
    finally:
        for module in modules:
            module.cpu()


def run_steps(
    *,
    stage: str,
    desc: str,
    batches: Iterable,
    start: int,
    end: int,
    optimizer: torch.optim.Optimizer,
    lr: Callable[[int], float],
    step: Step,
    epoch: Callable[[int], int],
    record: LogFn,
    log_every: int = 1,
    after_step: Callable[[int, Any], None] | None = None,
) -> dict[str, float]:
    """Steps `start` .. `end` - 1, one per batch: set the lr, `step` (loss and values to log), stop on a
    non-finite loss naming `stage`, epoch and step, take the optimizer step, `record` the values every
    `log_every` steps and at the last, then `after_step` (EMA updates, resume points). Returns the values
    last recorded."""
    last: dict[str, float] = {}
    progress = tqdm(batches, total=end, initial=start, desc=desc, unit="step", mininterval=1.0)
    for i, batch in enumerate(progress, start=start):
        set_lr(optimizer, lr(i))
        loss, logs = step(i, batch)
        check_finite(loss, stage, epoch(i), i)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if i % log_every == 0 or i == end - 1:
            last = {"train/loss": loss.item(), **{k: _scalar(v) for k, v in logs.items()}}
            last["train/lr"] = optimizer.param_groups[0]["lr"]
            record(last, i)
        if after_step is not None:
            after_step(i, batch)
    return last


def _scalar(value: Any) -> float:
    return value.detach().item() if isinstance(value, torch.Tensor) else float(value)
