import warnings

import numpy as np
import pytest
import torch

from pipeline.datasets import Batched, Views, endless_loader, epoch_loader, image_batches, to_tensor
from pipeline.distributed import World

IMAGES = np.random.default_rng(0).integers(0, 256, (20, 4, 4, 2), dtype=np.uint8)  # (N, H, W, C) store


def rows_of(loader) -> list[list[int]]:
    """The store rows of each batch of a loader over `Batched(IMAGES, index, row=index)`."""
    return [arrays["row"].tolist() for _, arrays in loader]


def test_to_tensor_moves_channels_first_and_scales_to_unit_range():
    image = np.zeros((3, 5, 2), dtype=np.uint8)
    image[1, 4, 0], image[2, 0, 1] = 255, 51
    x = to_tensor(image)
    assert x.shape == (2, 3, 5) and x.dtype == torch.float32
    assert x[0, 1, 4] == 1.0 and x[1, 2, 0] == pytest.approx(0.2) and x.sum() == pytest.approx(1.2)


def test_to_tensor_of_a_batch_is_channels_last_and_leaves_read_only_or_strided_input_alone():
    batch = IMAGES[:, :, ::2]  # strided: (20, 4, 2, 2)
    batch.setflags(write=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns on a non-writeable numpy array
        x = to_tensor(batch)
    assert x.shape == (20, 2, 4, 2) and x.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(x, torch.from_numpy(batch.astype(np.float32) / 255).permute(0, 3, 1, 2))


def test_batched_reads_store_rows_and_indexes_arrays_by_item_number():
    data = Batched(IMAGES, np.array([5, 2, 7]), label=np.array([10, 20, 30]))
    x, arrays = data.__getitems__([2, 0])  # items 2 and 0: store rows 7 and 5
    assert len(data) == 3
    assert torch.equal(x, to_tensor(IMAGES[[7, 5]])) and arrays["label"].tolist() == [30, 10]


def test_endless_loader_order_is_fixed_by_the_seed_and_skipping_resumes_it():
    data = Batched(IMAGES, np.arange(20), row=np.arange(20))
    batches = rows_of(endless_loader(data, 4, num_samples=24, seed=3))
    assert len(batches) == 6 and all(len(b) == 4 for b in batches)
    assert rows_of(endless_loader(data, 4, num_samples=24, seed=3)) == batches
    assert rows_of(endless_loader(data, 4, num_samples=24, seed=4)) != batches
    assert rows_of(endless_loader(data, 4, num_samples=24, seed=3, skip_batches=2)) == batches[2:]
    x, arrays = next(iter(endless_loader(data, 4, num_samples=24, seed=3)))
    assert torch.equal(x, to_tensor(IMAGES[arrays["row"].numpy()]))  # images and arrays of the same rows


def test_endless_loader_processes_split_each_batch_and_state_comes_with_it():
    data = Batched(IMAGES, np.arange(20), row=np.arange(20))
    whole = rows_of(endless_loader(data, 4, num_samples=24, seed=3))
    ranks = [rows_of(endless_loader(data, 4, 24, seed=3, world=World(r, 2))) for r in (0, 1)]
    assert [a + b for a, b in zip(*ranks, strict=True)] == whole
    (x, arrays), state = next(iter(endless_loader(data, 4, 24, seed=3, with_state=True)))
    assert arrays["row"].tolist() == whole[0] and state == []  # Batched: no albumentations generators
    with pytest.raises(ValueError, match="loader workers must be 0 or 1"):
        endless_loader(data, 4, 24, seed=3, workers=2)


def test_views_and_one_epoch_cover_each_item_once_in_a_seeded_order():
    views = Views(
        IMAGES, np.arange(10), [lambda image: {"image": image}, lambda image: {"image": 255 - image}]
    )
    (plain, inverted), item = views[3]
    assert (
        item == 3
        and torch.equal(plain, to_tensor(IMAGES[3]))
        and torch.allclose(plain + inverted, torch.ones_like(plain))
    )
    order = [items.tolist() for _, items in epoch_loader(views, 4, seed=1)]
    assert len(order) == 2 and len(set(sum(order, []))) == 8  # 10 items: two batches of 4, 2 dropped
    assert [items.tolist() for _, items in epoch_loader(views, 4, seed=1)] == order


def test_image_batches_are_the_rows_in_index_order():
    index = np.array([9, 0, 4, 4, 17, 3, 8])
    batches = list(image_batches(IMAGES, index, batch_size=3))
    assert [len(b) for b in batches] == [3, 3, 1]
    assert torch.equal(torch.cat(batches), to_tensor(IMAGES[index]))
    assert list(image_batches(IMAGES, index[:0], batch_size=3)) == []
