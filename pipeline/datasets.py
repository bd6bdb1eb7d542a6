"""Torch datasets and loaders over the prepared uint8 store: augmented views, whole batches, and the
sampling orders of the training loops."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler, default_collate, get_worker_info

from pipeline.distributed import SINGLE, World, shard_order
from pipeline.resume import augmentation_state

Transform = Callable[..., dict]


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """(H, W, C) or (B, H, W, C) uint8 -> float in [0, 1], (C, H, W) or (B, C, H, W), channels_last."""
    # np.require copies only when needed (a read-only or strided array, which torch.from_numpy warns about).
    x = torch.from_numpy(np.require(images, requirements=["C", "W"])).float().div_(255)
    if x.ndim == 3:
        return x.permute(2, 0, 1)
    return x.permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)


class Views(Dataset):
    """Item i: `len(transforms)` augmented views of store row index[i], plus the item number i."""

    def __init__(self, images: np.ndarray, index: np.ndarray, transforms: list[Transform]):
        self.images, self.index, self.transforms = images, index, transforms

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> tuple[list[torch.Tensor], int]:
        img = np.asarray(self.images[self.index[i]])  # (H, W, C) uint8
        return [to_tensor(t(image=img)["image"]) for t in self.transforms], i


class ViewsWithArrays(Dataset):
    """Views plus per-item arrays, so a loop gets (view, {name: value}) in one batch: labels, targets,
    weights."""

    def __init__(self, views: Views, **arrays: np.ndarray):
        self.views, self.arrays = views, arrays

    def __len__(self) -> int:
        return len(self.views)

    @property
    def transforms(self) -> list:
        return self.views.transforms

    def __getitem__(self, i: int):
        (view,), _ = self.views[i]
        return view, {k: torch.as_tensor(v[i]) for k, v in self.arrays.items()}


class Batched(Dataset):
    """Store rows `index` plus per-item arrays, un-augmented, read a whole batch at a time: the DataLoader
    calls `__getitems__` with the batch's item numbers, so a batch is one store read and no per-image Python
    (for augmentation on whole batches, pipeline.augment_batch). A batch: ((B, C, H, W) floats in [0, 1],
    {name: (B, ...) tensor})."""

    transforms: list = []  # no albumentations generators: nothing to carry in a resume point

    def __init__(self, images: np.ndarray, index: np.ndarray, **arrays: np.ndarray):
        self.images, self.index, self.arrays = images, index, arrays

    def __len__(self) -> int:
        return len(self.index)

    def __getitems__(self, items: list[int]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        rows = self.index[items]
        return to_tensor(self.images[rows]), {k: torch.as_tensor(v[items]) for k, v in self.arrays.items()}


class CollateWithAugmentationState:
    """collate_fn: the batch, and the state of the dataset's albumentations generators right after it was
    made, in whichever process made it. A resume point after that batch's step needs this state; with a
    worker process it is the worker's, and the worker is already drawing for the next batches."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __call__(self, items: list) -> tuple[Any, list]:
        info = get_worker_info()
        dataset = info.dataset if info is not None else self.dataset
        batch = items if isinstance(dataset, Batched) else default_collate(items)  # Batched: one already
        return batch, augmentation_state(dataset.transforms)


def _as_read(batch):
    return batch  # a Batched dataset's __getitems__ made the whole batch


def endless_loader(
    dataset: Dataset,
    batch_size: int,
    num_samples: int,
    seed: int,
    skip_batches: int = 0,
    world: World = SINGLE,
    workers: int = 0,
    with_state: bool = False,
    key: str = "batch size",
    pin_memory: bool = False,
) -> DataLoader:
    """Sample `num_samples` items with replacement in batches, in an order fixed by `seed`, leaving out the
    first `skip_batches` batches (a resumed run: the same order from there on). Under torchrun each process
    gets its slice of every batch of `batch_size` (pipeline.distributed).

    Augmentation runs in this process (`workers=0`) or in one worker process that works ahead (`workers=1`).
    Either way one copy of albumentations' seeded generators draws for the batches in order, so the augmented
    images are the same. `with_state`: batches come as (batch, augmentation state after it). `key`: the
    params key of `batch_size`, named when it does not divide by the processes. `pin_memory`: batches in
    page-locked memory, for non-blocking copies to a GPU.
    """
    generator = torch.Generator().manual_seed(seed)
    sampler = RandomSampler(dataset, replacement=True, num_samples=num_samples, generator=generator)
    local = world.local_batch(batch_size, key)
    order = shard_order(list(sampler)[skip_batches * batch_size :], batch_size, world)
    if workers not in (0, 1):
        raise ValueError(f"loader workers must be 0 or 1 (one generator sequence), got {workers}")
    if with_state:
        extra = {"collate_fn": CollateWithAugmentationState(dataset)}
    else:
        extra = {"collate_fn": _as_read} if isinstance(dataset, Batched) else {}
    if workers:
        extra.update(num_workers=1, prefetch_factor=4, multiprocessing_context="fork")
    return DataLoader(
        dataset, batch_size=local, sampler=order, drop_last=True, pin_memory=pin_memory, **extra
    )


def epoch_loader(dataset: Dataset, batch_size: int, seed: int, pin_memory: bool = False) -> DataLoader:
    """One shuffled pass, last partial batch dropped; the order depends on `seed` only. A Batched dataset
    reads each batch whole."""
    generator = torch.Generator().manual_seed(seed)
    extra = {"collate_fn": _as_read} if isinstance(dataset, Batched) else {}
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=True, generator=generator, num_workers=0, drop_last=True,
        pin_memory=pin_memory, **extra,
    )  # fmt: skip


def image_batches(
    images: np.ndarray,
    index: np.ndarray,
    batch_size: int,
    pin_memory: bool = False,
    transform: Transform | None = None,
) -> Iterator[torch.Tensor]:
    """Batches (B, C, H, W) of store rows `index`, in order; reads the store in slices. `transform`: each
    image under one draw of an albumentations transform, in order. `pin_memory`: each batch in page-locked
    memory, for a non-blocking copy to a GPU."""
    for start in range(0, len(index), batch_size):
        batch = images[index[start : start + batch_size]]
        if transform is not None:
            batch = np.stack([transform(image=img)["image"] for img in batch])
        x = to_tensor(batch)
        yield x.pin_memory() if pin_memory else x
