import numpy as np
import pytest

from pipeline.augment import strong, weak
from pipeline.config.pretrain import ViewPolicy
from pipeline.ssl.views import ssl_view


@pytest.mark.parametrize("channels", [1, 3])
def test_every_policy_keeps_shape_and_dtype_for_gray_and_colour(channels):
    image = np.random.default_rng(0).integers(0, 256, (28, 28, channels), dtype=np.uint8)
    policies = [
        ssl_view(ViewPolicy(blur=0.5), 28, seed=0, channels=channels),
        weak(28, seed=0),
        strong(num_ops=3, magnitude=10, cutout=0.5, image_size=28, seed=0),
    ]
    for policy in policies:
        for _ in range(20):  # many draws, so every op of the random choice is exercised
            out = policy(image=image)["image"]
            assert out.shape == image.shape and out.dtype == np.uint8


def test_seeded_policies_repeat_and_differ_by_seed():
    image = np.random.default_rng(1).integers(0, 256, (28, 28, 1), dtype=np.uint8)
    draws = [[ssl_view(ViewPolicy(), 28, seed)(image=image)["image"] for _ in range(3)] for seed in (0, 0, 1)]
    assert all(np.array_equal(a, b) for a, b in zip(draws[0], draws[1], strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(draws[0], draws[2], strict=True))
