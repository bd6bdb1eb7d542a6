"""Data-parallel training and sharded inference across processes started by `torchrun`.

`torchrun --nproc_per_node N stages/student.py --round r1` starts N copies of a stage; each reads WORLD_SIZE
and RANK from its environment. The processes compute on CPUs and talk over gloo, or on GPUs (params.yaml
`compute.device: cuda`, one GPU per process) over NCCL, on one machine or many.

Training: every rank draws the same global order of images from the seed and takes its own slice of each
global batch (batch / N images); DistributedDataParallel averages the gradients, so a step sees the same
images as in one process. Each rank draws its own augmentations, dropout and stochastic-depth masks, and
BatchNorm normalizes with per-rank batch statistics, so a run on N processes matches a run on one in
distribution, not bit for bit. Inference: each rank predicts a contiguous chunk and the chunks are gathered in
rank order, which is the original order. Rank 0 alone writes outputs and logs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from pipeline.compute import CPU, Compute


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def seed(self, seed: int) -> int:
        """A per-rank seed for augmentation and dropout draws; rank 0 keeps `seed`, as one process does."""
        return seed + 1_000_003 * self.rank

    def local_batch(self, batch: int, key: str) -> int:
        if batch % self.size:
            raise ValueError(f"{key}: {batch} is not divisible by the {self.size} processes of torchrun")
        return batch // self.size

    def chunk(self, index: np.ndarray) -> np.ndarray:
        """This rank's contiguous share of `index` (ranks in order cover it exactly once)."""
        n = len(index)
        return index[self.rank * n // self.size : (self.rank + 1) * n // self.size]

    def gather(self, local: np.ndarray) -> np.ndarray:
        """Every rank's `local` rows concatenated in rank order (the inverse of `chunk`), on every rank."""
        if self.size == 1:
            return local
        parts: list[np.ndarray | None] = [None] * self.size
        dist.all_gather_object(parts, local)
        return np.concatenate(parts)

    def close(self) -> None:
        """Leave the process group (each torchrun process, when its stage is done)."""
        if self.size > 1 and dist.is_initialized():
            dist.destroy_process_group()


SINGLE = World()


def init_world(compute: Compute = CPU) -> World:
    """The process group of a `torchrun` launch, or SINGLE without torchrun: NCCL when the stage computes on
    GPUs (each process on GPU LOCAL_RANK, pipeline.compute), gloo on CPUs."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return SINGLE
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if compute.device.type == "cuda" else "gloo")
    return World(rank=dist.get_rank(), size=dist.get_world_size())


def shard_order(order: list[int], batch: int, world: World) -> list[int]:
    """This rank's slice of each global batch of `batch` items in `order` (batch divisible by world.size)."""
    if world.size == 1:
        return order
    local = batch // world.size
    start = world.rank * local
    return [i for k in range(0, len(order) - batch + 1, batch) for i in order[k + start : k + start + local]]


def wrap(model: torch.nn.Module, world: World, seed: int, find_unused: bool = False) -> torch.nn.Module:
    """DistributedDataParallel around `model` under torchrun, else `model`. DDP broadcasts rank 0's weights;
    then each rank reseeds torch with its own seed, for its own dropout and stochastic-depth masks.
    `find_unused`: some parameters may get no gradient in a step (stochastic depth drops a block)."""
    if world.size == 1:
        return model
    net = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=find_unused)
    torch.manual_seed(world.seed(seed))
    return net
