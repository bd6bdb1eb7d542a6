"""ImageFile reads rows of an .npy store like array indexing, without holding the file in memory."""

import pickle

import numpy as np
import pytest

from pipeline.data.store import ImageFile


@pytest.fixture
def stored(tmp_path) -> tuple[np.ndarray, ImageFile]:
    images = np.random.default_rng(0).integers(0, 256, (50, 5, 4, 3), dtype=np.uint8)
    np.save(tmp_path / "images.npy", images)
    return images, ImageFile(tmp_path / "images.npy")


@pytest.mark.parametrize(
    "key",
    [
        3,
        np.int64(7),
        -1,
        slice(2, 9),
        slice(None),
        slice(40, 10, -3),
        [9],
        np.array([], np.int64),
        np.array([4, 5, 6, 1, 2, 40, 41, 0, 0]),
        np.arange(50)[::-3],
    ],  # fmt: skip
)
def test_rows_read_as_array_indexing_reads_them(stored, key):
    images, file = stored
    got = file[key]
    assert got.dtype == np.uint8 and np.array_equal(got, images[key])


def test_shape_length_whole_array_and_a_pickled_copy(stored):
    images, file = stored
    assert file.shape == images.shape and len(file) == 50 and file.ndim == 4
    assert np.array_equal(np.asarray(file), images)
    copy = pickle.loads(pickle.dumps(file))  # a DataLoader worker's: it opens the file itself
    assert np.array_equal(copy[[1, 2, 49]], images[[1, 2, 49]])


def test_a_row_past_the_end_is_an_index_error(stored):
    _, file = stored
    with pytest.raises(IndexError, match="out of range for 50 images"):
        file[[0, 50]]


def resident_kib() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS"))


def test_reading_every_row_keeps_resident_memory_flat_unlike_a_memory_map(tmp_path):
    rows = 64 * 1024  # 64 MiB of 1 KiB rows
    np.lib.format.open_memmap(tmp_path / "big.npy", mode="w+", dtype=np.uint8, shape=(rows, 32, 32, 1))[:] = 7
    order = np.random.default_rng(0).permutation(rows)

    def grown_by_reading(images) -> float:
        before = resident_kib()
        for start in range(0, rows, 256):  # random batches, as a training loop reads them
            assert images[order[start : start + 256]].sum() == 7 * 256 * 1024
        return (resident_kib() - before) / 1024  # MiB

    assert grown_by_reading(ImageFile(tmp_path / "big.npy")) < 16
    assert grown_by_reading(np.load(tmp_path / "big.npy", mmap_mode="r")) > 48  # the map counts every page
