"""Augmentation policies of the teacher and the students, built with albumentations, for (H, W, C) uint8
images, grayscale or color (the SSL views are in pipeline.ssl.views).

- `weak`: flip + reflect-padded random shift of 1/8 of the side (FixMatch's weak augmentation).
- `strong`: weak, then `num_ops` ops drawn from a RandAugment-like list at magnitude m/10, then cutout.

Each Compose is seeded, so a run in one process draws the same augmentations every time.
"""

from __future__ import annotations

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # albumentations checks PyPI for updates on import

import albumentations as A  # noqa: E402
import cv2  # noqa: E402


def _shift(image_size: int) -> list[A.BasicTransform]:
    pad = max(1, image_size // 8)
    return [
        A.HorizontalFlip(p=0.5),
        A.PadIfNeeded(image_size + 2 * pad, image_size + 2 * pad, border_mode=cv2.BORDER_REFLECT_101),
        A.RandomCrop(image_size, image_size),
    ]


def weak(image_size: int, seed: int) -> A.Compose:
    return A.Compose(_shift(image_size), seed=seed)


def randaugment_ops(magnitude: int) -> list[A.BasicTransform]:
    """RandAugment's ops (Cubuk et al. 2020) at a fixed magnitude m in [0, 10], each with p=1."""
    m = magnitude / 10
    return [
        A.Affine(rotate=(-30 * m, 30 * m), p=1.0),
        A.Affine(shear={"x": (-30 * m, 30 * m), "y": (0, 0)}, p=1.0),
        A.Affine(shear={"x": (0, 0), "y": (-30 * m, 30 * m)}, p=1.0),
        A.Affine(translate_percent={"x": (-0.3 * m, 0.3 * m), "y": (0, 0)}, p=1.0),
        A.Affine(translate_percent={"x": (0, 0), "y": (-0.3 * m, 0.3 * m)}, p=1.0),
        A.RandomBrightnessContrast(brightness_limit=0.9 * m, contrast_limit=0, p=1.0),
        A.RandomBrightnessContrast(brightness_limit=0, contrast_limit=0.9 * m, p=1.0),
        A.Sharpen(alpha=(0.1, max(0.1, m)), p=1.0),
        A.Solarize(threshold_range=(1 - m, 1 - m) if m > 0 else (1.0, 1.0), p=1.0),
        A.Posterize(num_bits=max(1, 8 - round(4 * m)), p=1.0),
        A.AutoContrast(p=1.0),
        A.Equalize(p=1.0),
    ]


def strong(num_ops: int, magnitude: int, cutout: float, image_size: int, seed: int) -> A.Compose:
    """Flip + shift, `num_ops` RandAugment ops at `magnitude` (of 10), then a cutout square of side
    `cutout` x the image side (student.strong in params.yaml)."""
    ops = _shift(image_size)
    if num_ops > 0:
        ops.append(A.SomeOf(randaugment_ops(magnitude), n=num_ops, replace=False, p=1.0))
    if cutout > 0:
        side = max(1, round(cutout * image_size))
        ops.append(
            A.CoarseDropout(
                num_holes_range=(1, 1),
                hole_height_range=(side, side),
                hole_width_range=(side, side),
                fill=127,
                p=1.0,
            )
        )
    return A.Compose(ops, seed=seed)
