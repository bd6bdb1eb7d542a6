import albumentations as A
import numpy as np

from pipeline.config.pretrain import ViewPolicy
from pipeline.ssl.views import ssl_view


def test_colour_views_of_one_image_differ_in_hue_and_some_are_grey():
    """Without colour distortion two crops of an image share its colour histogram, and SSL learns to match
    views by colour (SimCLR, fig. 5); the colour policy breaks that."""
    image = np.zeros((28, 28, 3), np.uint8)
    image[...] = (200, 60, 40)  # one colour everywhere, so only the colour ops change it
    view = ssl_view(ViewPolicy(), 28, seed=0, channels=3)
    draws = [view(image=image)["image"].reshape(-1, 3).astype(float).mean(axis=0) for _ in range(200)]
    grey = [d for d in draws if np.ptp(d) < 1]
    assert 20 <= len(grey) <= 60  # grayscale p=0.2 of 200 views
    coloured = np.array([d for d in draws if np.ptp(d) >= 1])
    green_share = coloured[:, 1] / coloured.sum(axis=1)  # 60 / 300 = 0.2 in the image itself
    assert green_share.std() > 0.02 and np.ptp(green_share) > 0.1  # the hue moved


def test_a_grayscale_view_draws_what_the_grayscale_policy_always_drew():
    image = np.random.default_rng(1).integers(0, 256, (28, 28, 1), dtype=np.uint8)
    policy = ViewPolicy(blur=0.5)
    before = A.Compose(  # the policy of grayscale images before colour images had their own
        [
            A.RandomResizedCrop(size=(28, 28), scale=policy.crop_scale, p=1.0),
            A.HorizontalFlip(p=policy.hflip),
            A.RandomBrightnessContrast(policy.brightness, policy.contrast, p=policy.jitter),
            A.GaussianBlur(sigma_limit=(0.1, 1.0), p=policy.blur),
        ],
        seed=3,
    )
    view = ssl_view(policy, 28, seed=3, channels=1)
    for _ in range(10):
        assert np.array_equal(view(image=image)["image"], before(image=image)["image"])
