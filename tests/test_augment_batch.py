import numpy as np
import pytest
import torch

from pipeline.augment_batch import (
    CUTOUT_FILL,
    OPS,
    BatchStrong,
    _equalize,
    _photometric,
    _sharpen,
)
from pipeline.augment_weak import _flip_shift
from pipeline.config.student import StrongAugment


def batch(n: int = 64, channels: int = 1, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, channels, 28, 28), generator=g).float().div(255)


def policy(seed: int = 0, **cfg) -> BatchStrong:
    values = {"num_ops": 2, "magnitude": 5, "cutout": 0.25, "backend": "tensor", **cfg}
    return BatchStrong(StrongAugment(**values), 28, seed)


@pytest.mark.parametrize("channels", [1, 3])
def test_keeps_shape_and_range_and_returns_channels_last(channels):
    x = batch(channels=channels)
    out = policy(num_ops=3, magnitude=10, cutout=0.5)(x)
    assert out.shape == x.shape and out.dtype == torch.float32
    assert 0 <= out.min() and out.max() <= 1
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert not torch.equal(out, x)


def test_each_image_draws_num_ops_distinct_ops_uniformly():
    chosen = policy(num_ops=2).choose_ops(12_000)
    assert (chosen.sum(dim=1) == 2).all()
    share = chosen.float().mean(dim=0)  # each op: 2 / 12 of the images
    assert share.numpy() == pytest.approx(np.full(len(OPS), 2 / len(OPS)), abs=0.01)


def test_a_seed_repeats_the_batch_and_another_seed_differs():
    x = batch()
    a, b, c = policy(0)(x), policy(0)(x), policy(1)(x)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_the_generator_state_resumes_the_sequence():
    x = batch()
    unbroken = policy(0)
    unbroken(x)
    expected = unbroken(x)
    first = policy(0)
    first(x)
    resumed = policy(99)
    resumed.load_state_dict(first.state_dict())
    assert torch.equal(resumed(x), expected)


def test_flip_and_shift_copy_whole_pixels_with_reflect_101_padding():
    x = torch.arange(2 * 5 * 6, dtype=torch.float32).reshape(2, 1, 5, 6)
    out = _flip_shift(x, torch.tensor([True, False]), torch.tensor([[1, -2], [0, 1]]))

    def expected(image, flip, sx, sy, p=3):  # pad, then crop at the shifted window (augment.weak's way)
        padded = np.pad(image[:, ::-1] if flip else image, p, mode="reflect")  # numpy reflect = reflect-101
        return padded[p - sy : p - sy + 5, p - sx : p - sx + 6]

    assert np.array_equal(out[0, 0].numpy(), expected(x[0, 0].numpy(), True, 1, -2))
    assert np.array_equal(out[1, 0].numpy(), expected(x[1, 0].numpy(), False, 0, 1))


def test_no_ops_and_no_cutout_only_flip_and_shift():
    x = batch(16)
    out = policy(num_ops=0, cutout=0.0)(x)
    for image, moved in zip(x, out, strict=True):  # every output pixel is a pixel of its own image
        assert set(moved.flatten().tolist()) <= set(image.flatten().tolist())


def test_cutout_fills_one_square_of_the_configured_side_inside_the_image():
    out = policy(num_ops=0, cutout=0.25)(torch.zeros(32, 1, 28, 28))
    filled = out == CUTOUT_FILL
    assert (filled.sum(dim=(1, 2, 3)) == 7 * 7).all()  # round(0.25 * 28) = 7, never clipped by the border
    rows, cols = filled.any(dim=3)[:, 0], filled.any(dim=2)[:, 0]
    assert (rows.sum(dim=1) == 7).all() and (cols.sum(dim=1) == 7).all()


def test_a_larger_magnitude_changes_the_images_more():
    """The same seed draws the same flips, shifts and ops at any magnitude; num_ops = 0 is that baseline."""
    x = batch(256)
    base = policy(num_ops=0, cutout=0.0)(x)
    change = [(policy(magnitude=m, cutout=0.0)(x) - base).abs().mean().item() for m in (0, 3, 9)]
    assert change[0] < change[1] < change[2]


def test_equalize_is_cv2_equalizehist_per_image():
    cv2 = pytest.importorskip("cv2")
    images = batch(8).mul(255).round().to(torch.uint8)
    images[0] = 7  # one value: left as it is
    ours = _equalize(images)
    for image, out in zip(images, ours, strict=True):
        expected = cv2.equalizeHist(image[0].numpy()) if image.unique().numel() > 1 else image[0].numpy()
        assert np.abs(out[0].numpy().astype(int) - expected).max() <= 1  # rounding of the lookup table


def test_sharpen_is_albumentations_sharpen_with_the_same_alpha_and_lightness():
    import albumentations as A

    images = batch(8).mul(255).round().to(torch.uint8)
    sharpen = A.Sharpen(alpha=(0.3, 0.3), lightness=(0.7, 0.7), p=1.0)
    expected = np.stack([sharpen(image=i.permute(1, 2, 0).numpy())["image"] for i in images]) / 255
    ours = _sharpen(images.float() / 255, torch.full((8,), 0.3), torch.full((8,), 0.7))
    assert np.abs(ours.permute(0, 2, 3, 1).numpy() - expected).max() <= 1 / 255


def test_solarize_and_posterize_are_torchvisions():
    from torchvision.transforms.v2 import functional as TF

    x = torch.rand(6, 1, 8, 8)
    cfg = StrongAugment(num_ops=1, magnitude=5, cutout=0.0, backend="tensor")
    only = {op: torch.tensor([[o == op for o in OPS]] * 6) for op in ("solarize", "posterize")}
    values = {op: torch.zeros(6) for op in OPS} | {"lightness": torch.zeros(6)}
    m = cfg.magnitude / 10
    solarized = _photometric(x.clone(), only["solarize"], values, m)
    assert torch.equal(solarized, TF.solarize(x, 1 - m))
    posterized = _photometric(x.clone(), only["posterize"], values, m)
    as_uint8 = x.mul(255).round().to(torch.uint8)
    assert torch.equal(posterized, TF.posterize(as_uint8, 8 - round(4 * m)).float() / 255)
