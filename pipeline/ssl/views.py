"""The views of SSL pretraining: a SimCLR-style random view built with albumentations, for (H, W, C) uint8
images, grayscale or colour."""

from __future__ import annotations

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # albumentations checks PyPI for updates on import

import albumentations as A  # noqa: E402

from pipeline.config.pretrain import ViewPolicy  # noqa: E402


def ssl_view(policy: ViewPolicy, image_size: int, seed: int, channels: int = 1) -> A.Compose:
    """A random view: resized crop, flip, then brightness and contrast jitter; on colour images (`channels`
    3) a colour jitter of brightness, contrast, saturation and hue, and a random grayscale instead. Then an
    optional blur."""
    ops = [
        A.RandomResizedCrop(size=(image_size, image_size), scale=policy.crop_scale, p=1.0),
        A.HorizontalFlip(p=policy.hflip),
    ]
    if channels == 3:
        ops += [
            A.ColorJitter(policy.brightness, policy.contrast, policy.saturation, policy.hue, p=policy.jitter),
            A.ToGray(num_output_channels=3, p=policy.grayscale),
        ]
    else:
        ops.append(A.RandomBrightnessContrast(policy.brightness, policy.contrast, p=policy.jitter))
    if policy.blur > 0:
        ops.append(A.GaussianBlur(sigma_limit=(0.1, 1.0), p=policy.blur))
    return A.Compose(ops, seed=seed)
