"""The batched SSL views (`pretrain.views_backend: tensor`) against albumentations, op by op, and as a
policy."""

import math

import albumentations as A
import cv2
import numpy as np
import pytest
import torch
from albumentations.augmentations.blur import functional as blur_functional
from albumentations.augmentations.pixel import functional as pixel_functional

from pipeline.config.pretrain import ViewPolicy
from pipeline.ssl.views_batch import (
    CROP_TRIES,
    LOG_RATIO,
    BatchViews,
    adjust,
    brightness_contrast,
    crop_boxes,
    gaussian_blur,
    resized_crop,
    to_gray,
)

ONE_LEVEL = 1 / 255 + 1e-4  # albumentations rounds to uint8 after each op; the batched ops keep floats


def images(n: int = 6, channels: int = 3, size: tuple[int, int] = (20, 24), seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, *size, channels), dtype=np.uint8)


def as_batch(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(img).permute(0, 3, 1, 2).float().div(255)


def as_image(x: torch.Tensor) -> np.ndarray:
    return x.permute(1, 2, 0).numpy()


def test_the_resized_crop_is_cv2_resize_of_the_box_then_the_flip():
    img = images()
    boxes = torch.tensor(
        [[0, 0, 24, 20], [3, 2, 10, 9], [5, 5, 23, 19], [1, 0, 2, 20], [10, 3, 24, 5], [0, 0, 24, 1]]
    )
    flip = torch.tensor([False, True, False, True, True, False])
    out = resized_crop(as_batch(img), boxes, flip)
    for i, (x0, y0, x1, y1) in enumerate(boxes.tolist()):
        ref = cv2.resize(img[i, y0:y1, x0:x1], (24, 20), interpolation=cv2.INTER_LINEAR)
        ref = ref[:, ::-1] if flip[i] else ref
        assert np.abs(as_image(out[i]) - ref / 255).max() < ONE_LEVEL


class Replay:
    """Stands in for albumentations' `py_random`: hands out given uniform draws in order."""

    def __init__(self, draws: list[float]):
        self.draws = iter(draws)

    def random(self) -> float:
        return next(self.draws)

    def uniform(self, low: float, high: float) -> float:
        return low + (high - low) * next(self.draws)


@pytest.mark.parametrize("scale", [(0.3, 1.0), (0.08, 1.0), (1.0, 1.0)])
def test_crop_boxes_are_what_random_resized_crop_picks_from_the_same_draws(scale):
    g = torch.Generator().manual_seed(1)
    n, size = 200, (20, 24)
    areas, ratios = torch.rand(n, CROP_TRIES, generator=g), torch.rand(n, CROP_TRIES, generator=g)
    starts = torch.rand(n, 2, generator=g)
    boxes = crop_boxes(size, scale, areas, ratios, starts)
    crop = A.RandomResizedCrop(size=size, scale=scale, p=1.0)
    fallbacks = 0
    for i in range(n):
        fits = [None] * CROP_TRIES
        draws = []
        for t in range(CROP_TRIES):  # albumentations draws the area, the ratio, then the starts of a fit
            draws += [float(areas[i, t]), float(ratios[i, t])]
            area = size[0] * size[1] * (scale[0] + (scale[1] - scale[0]) * float(areas[i, t]))
            aspect = math.exp(LOG_RATIO[0] + (LOG_RATIO[1] - LOG_RATIO[0]) * float(ratios[i, t]))
            w, h = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
            fits[t] = 0 < w <= size[1] and 0 < h <= size[0]
            if fits[t]:
                draws += [float(starts[i, 0]), float(starts[i, 1])]
                break
        fallbacks += not any(fits)
        crop.py_random = Replay(draws)
        expected = crop.get_params_dependent_on_data({"shape": (*size, 1)}, {})["crop_coords"]
        assert tuple(boxes[i].tolist()) == tuple(expected)
    assert fallbacks == 0 or scale == (1.0, 1.0)
    if scale == (1.0, 1.0):
        assert fallbacks > 0  # a whole-image area at a ratio away from the image's does not fit


@pytest.mark.parametrize(
    ("op", "reference", "values"),
    [
        (0, pixel_functional.adjust_brightness_torchvision, [0.6, 1.3, 0.2, 1.0, 1.4, 0.0]),
        (1, pixel_functional.adjust_contrast_torchvision, [0.6, 1.3, 0.2, 1.0, 1.4, 0.7]),
        (2, pixel_functional.adjust_saturation_torchvision, [0.6, 1.3, 0.2, 1.0, 1.4, 0.0]),
    ],
)
def test_colour_jitter_ops_match_albumentations(op, reference, values):
    img = images()
    out = adjust(as_batch(img), op, torch.tensor(values))
    for i, value in enumerate(values):
        assert np.abs(as_image(out[i]) - reference(img[i].copy(), value) / 255).max() < ONE_LEVEL


def test_the_hue_shift_matches_albumentations_on_floats():
    """On uint8 images albumentations goes through cv2's 8-bit HSV (hue in steps of 2 degrees), which moves
    some pixels by up to ~12 levels; its float path is the same definition without that rounding."""
    img = images()
    shifts = [0.1, -0.3, 0.45, -0.5, 0.25, 0.0]
    out = adjust(as_batch(img), 3, torch.tensor(shifts))
    for i, shift in enumerate(shifts):
        ref = pixel_functional.adjust_hue_torchvision((img[i] / 255).astype(np.float32), shift)
        assert np.abs(as_image(out[i]) - ref).max() < 1e-3
        ref8 = pixel_functional.adjust_hue_torchvision(img[i].copy(), shift) / 255
        assert np.abs(as_image(out[i]) - ref8).mean() < 2 / 255


def test_gray_is_cv2_rgb2gray():
    img = images()
    ref = np.stack([cv2.cvtColor(im, cv2.COLOR_RGB2GRAY) for im in img])
    assert np.abs(to_gray(as_batch(img))[:, 0].numpy() - ref / 255).max() < ONE_LEVEL


@pytest.mark.parametrize("sigma", [0.1, 0.3, 0.6, 0.9, 1.0])
def test_blur_matches_albumentations_gaussian_blur(sigma):
    img = images(n=1)
    kernel = blur_functional.create_gaussian_kernel_1d(sigma, 0)
    ref = pixel_functional.separable_convolve(img[0], kernel=kernel) / 255
    out = gaussian_blur(as_batch(img), torch.tensor([sigma]))
    assert np.abs(as_image(out[0]) - ref).max() < ONE_LEVEL


def test_brightness_contrast_matches_albumentations():
    img = images(channels=1)
    alpha, beta = torch.tensor([0.7, 1.3, 1.0, 1.0, 0.6, 1.4]), torch.tensor([0.1, -0.2, 0.3, 0.0, 0.0, -0.4])
    on = torch.tensor([True, True, True, True, True, False])
    out = brightness_contrast(as_batch(img), on, alpha, beta)
    op = A.RandomBrightnessContrast(p=1.0)
    for i in range(5):
        ref = op.apply(img[i], alpha=float(alpha[i]), beta=float(beta[i]) * 255)
        assert np.abs(as_image(out[i]) - ref.reshape(img[i].shape) / 255).max() < ONE_LEVEL
    assert torch.equal(out[5], as_batch(img)[5])


@pytest.mark.parametrize("channels", [1, 3])
def test_views_keep_shape_and_range_and_a_seed_repeats_them(channels):
    x = as_batch(images(n=32, channels=channels, size=(28, 28)))
    policy = ViewPolicy(blur=0.5)
    a, b, c = BatchViews(policy, 0)(x), BatchViews(policy, 0)(x), BatchViews(policy, 1)(x)
    assert a.shape == x.shape and 0 <= a.min() and a.max() <= 1
    assert a.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_the_generator_state_resumes_the_sequence():
    x = as_batch(images(n=8, size=(28, 28)))
    unbroken = BatchViews(ViewPolicy(), 0)
    unbroken(x)
    expected = unbroken(x)
    first = BatchViews(ViewPolicy(), 0)
    first(x)
    resumed = BatchViews(ViewPolicy(), 99)
    resumed.load_state_dict(first.state_dict())
    assert torch.equal(resumed(x), expected)


def test_colour_views_of_one_image_differ_in_hue_and_some_are_grey():
    """As tests/ssl/test_views.py's check of the albumentations policy: one colour everywhere, so only the
    colour ops change it."""
    x = torch.tensor([200 / 255, 60 / 255, 40 / 255])[None, :, None, None].expand(400, 3, 28, 28)
    means = BatchViews(ViewPolicy(), 0)(x).mean(dim=(2, 3)).numpy()
    grey = np.ptp(means, axis=1) < 1 / 255
    assert 50 <= grey.sum() <= 110  # grayscale p=0.2 of 400 views
    coloured = means[~grey]
    green_share = coloured[:, 1] / coloured.sum(axis=1)  # 0.2 in the image itself
    assert green_share.std() > 0.02 and np.ptp(green_share) > 0.1


def test_flip_and_jitter_shares_follow_the_policy():
    x = as_batch(images(n=4000, channels=1, size=(8, 8)))
    policy = ViewPolicy(crop_scale=(1.0, 1.0), hflip=0.3, jitter=0.0)  # whole image, no jitter: flips only
    out = BatchViews(policy, 0)(x)
    flipped = torch.isclose(out, x.flip(-1), atol=1e-5).flatten(1).all(dim=1)
    kept = torch.isclose(out, x, atol=1e-5).flatten(1).all(dim=1)
    assert (flipped | kept).all()
    assert flipped.float().mean().item() == pytest.approx(0.3, abs=0.03)
