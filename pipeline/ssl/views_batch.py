"""The SSL views of whole batches of tensors (`pretrain.views_backend: tensor`).

The policy of pipeline.ssl.views (albumentations, image by image) on (B, C, H, W) floats in [0, 1], with a
few tensor ops per batch. Every image draws its own values, all from one seeded torch.Generator, in a fixed
order of draws (a batch's draws depend only on its size):

- random resized crop, as albumentations' RandomResizedCrop picks it: area a uniform share in `crop_scale`
  of the image, log aspect ratio uniform in [log 3/4, log 4/3], width and height rounded, the first of 10
  tries that fits, else the centre crop; then the crop resized to the image size with bilinear sampling at
  half-pixel centres, clamped to the crop's own pixels (cv2.resize INTER_LINEAR), and flipped with
  probability `hflip`: one `grid_sample` for the whole batch;
- grayscale images, with probability `jitter`: x * alpha + beta, alpha = 1 + U(-contrast, contrast),
  beta = U(-brightness, brightness) (RandomBrightnessContrast);
- colour images, with probability `jitter`: ColorJitter's four ops in a random order per image
  (torchvision's definitions: brightness x * b; contrast x * c + (1 - c) * mean(gray(x)); saturation
  x * s + (1 - s) * gray(x); hue shifted by h turns in HSV), b, c, s uniform in [max(0, 1 - v), 1 + v] and
  h in [-hue, hue]; then, with probability `grayscale`, gray(x) = 0.299 R + 0.587 G + 0.114 B (ToGray);
- with probability `blur`, a Gaussian blur, sigma U(0.1, 1), kernel size 2 int(3.5 sigma) + 1 (PIL's rule,
  albumentations' GaussianBlur), the border reflected (reflect-101).

albumentations rounds to uint8 after each op; here values stay floats, so pixels differ by about 1/255
(tests compare each op with its albumentations counterpart).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from pipeline.config.pretrain import ViewPolicy

CROP_TRIES = 10
LOG_RATIO = (math.log(3 / 4), math.log(4 / 3))
BLUR_SIGMA = (0.1, 1.0)
BLUR_MAX_SIZE = 2 * int(3.5 * BLUR_SIGMA[1]) + 1
LUMA = (0.299, 0.587, 0.114)


class BatchViews:
    """Callable: (B, C, H, W) floats in [0, 1] -> one random view of each image, (B, C, H, W) channels-last.
    Its generator's state is in `state_dict`, so a resume point carries it like a module's."""

    def __init__(self, policy: ViewPolicy, seed: int):
        self.policy = policy
        self.generator = torch.Generator().manual_seed(seed)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.generator.set_state(state["generator"])

    def _rand(self, *shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=self.generator)

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        p, n = self.policy, len(x)
        # Every draw for every image, in this order, whatever the image's channels and the policy's
        # probabilities.
        crop_draws = (self._rand(n, CROP_TRIES), self._rand(n, CROP_TRIES), self._rand(n, 2))
        flip = self._rand(n) < p.hflip
        jitter = self._rand(n) < p.jitter
        factors = self._rand(n, 4)
        order = self._rand(n, 4).argsort(dim=1)
        gray = self._rand(n) < p.grayscale
        blur = self._rand(n) < p.blur
        sigma = BLUR_SIGMA[0] + (BLUR_SIGMA[1] - BLUR_SIGMA[0]) * self._rand(n)

        boxes = crop_boxes(x.shape[-2:], p.crop_scale, *crop_draws)
        x = resized_crop(x.contiguous(), boxes, flip)
        if x.shape[1] == 3:
            x = color_jitter(x, jitter, jitter_factors(factors, p), order)
            x = torch.where(gray[:, None, None, None], to_gray(x).expand_as(x), x)
        else:
            x = brightness_contrast(x, jitter, *contrast_brightness_factors(factors, p))
        if blur.any():
            x[blur] = gaussian_blur(x[blur], sigma[blur])
        return x.contiguous(memory_format=torch.channels_last)


def crop_boxes(
    size: tuple[int, int], scale: tuple[float, float], areas: torch.Tensor, ratios: torch.Tensor,
    starts: torch.Tensor,
) -> torch.Tensor:  # fmt: skip
    """(B, 4) long boxes x0, y0, x1, y1 (x1, y1 exclusive) of RandomResizedCrop from uniform draws: `areas`
    and `ratios` (B, CROP_TRIES), `starts` (B, 2) as (h_start, w_start)."""
    height, width = size
    area = height * width
    target = area * (scale[0] + (scale[1] - scale[0]) * areas)
    aspect = torch.exp(LOG_RATIO[0] + (LOG_RATIO[1] - LOG_RATIO[0]) * ratios)
    w = torch.sqrt(target * aspect).round().long()  # Python's round and torch's: both half to even
    h = torch.sqrt(target / aspect).round().long()
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = fits.long().argmax(dim=1, keepdim=True)  # the first try that fits
    w, h = w.gather(1, first)[:, 0], h.gather(1, first)[:, 0]
    # No try fits: the centre crop of the whole image within the ratio range.
    in_ratio = width / height
    if in_ratio < 3 / 4:
        fallback = (width, round(width / (3 / 4)))
    elif in_ratio > 4 / 3:
        fallback = (round(height * (4 / 3)), height)
    else:
        fallback = (width, height)
    found = fits.any(dim=1)
    w = torch.where(found, w, fallback[0])
    h = torch.where(found, h, fallback[1])
    y0 = torch.where(found, ((height - h + 1) * starts[:, 0]).long(), (height - h) // 2)
    x0 = torch.where(found, ((width - w + 1) * starts[:, 1]).long(), (width - w) // 2)
    return torch.stack([x0, y0, x0 + w, y0 + h], dim=1)


def _sample_points(start: torch.Tensor, length: torch.Tensor, out: int, full: int) -> torch.Tensor:
    """(B, out) normalized coordinates (grid_sample, align_corners=False) of cv2.resize INTER_LINEAR's
    sample points when a crop of `length` pixels from `start` is resized to `out` pixels: half-pixel centres,
    clamped to the crop's first and last pixel."""
    j = torch.arange(out, dtype=torch.float32) + 0.5
    pixel = j * (length[:, None].float() / out) - 0.5
    pixel = torch.minimum(pixel.clamp(min=0), (length[:, None] - 1).float()) + start[:, None]
    return (2 * pixel + 1) / full - 1


def resized_crop(x: torch.Tensor, boxes: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Each image's box resized to the image's size (bilinear, as cv2.resize INTER_LINEAR), then flipped
    horizontally where `flip`: one grid_sample."""
    n, _, height, width = x.shape
    gx = _sample_points(boxes[:, 0], boxes[:, 2] - boxes[:, 0], width, width)
    gy = _sample_points(boxes[:, 1], boxes[:, 3] - boxes[:, 1], height, height)
    gx = torch.where(flip[:, None], gx.flip(1), gx)
    grid = torch.stack([gx[:, None, :].expand(n, height, width), gy[:, :, None].expand(n, height, width)],
                       dim=-1)  # fmt: skip
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def contrast_brightness_factors(factors: torch.Tensor, p: ViewPolicy) -> tuple[torch.Tensor, torch.Tensor]:
    """RandomBrightnessContrast's alpha = 1 + U(-contrast, contrast) and beta = U(-brightness, brightness)."""
    alpha = 1 + p.contrast * (2 * factors[:, 0] - 1)
    beta = p.brightness * (2 * factors[:, 1] - 1)
    return alpha, beta


def brightness_contrast(x: torch.Tensor, on: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor):
    """x * alpha + beta, clipped to [0, 1], for the images `on` (RandomBrightnessContrast, brightness by the
    maximum value)."""
    out = (x * alpha[:, None, None, None] + beta[:, None, None, None]).clamp_(0, 1)
    return torch.where(on[:, None, None, None], out, x)


def jitter_factors(factors: torch.Tensor, p: ViewPolicy) -> torch.Tensor:
    """(B, 4): ColorJitter's brightness, contrast and saturation factors, U[max(0, 1 - v), 1 + v], and its hue
    shift U[-hue, hue], from uniform draws."""
    out = torch.empty_like(factors)
    for k, v in enumerate((p.brightness, p.contrast, p.saturation)):
        low = max(0.0, 1 - v)
        out[:, k] = low + (1 + v - low) * factors[:, k]
    out[:, 3] = p.hue * (2 * factors[:, 3] - 1)
    return out


def to_gray(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) -> (B, 1, H, W): 0.299 R + 0.587 G + 0.114 B (cv2's RGB2GRAY)."""
    return (LUMA[0] * x[:, 0] + LUMA[1] * x[:, 1] + LUMA[2] * x[:, 2])[:, None]


def rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB in [0, 1] -> HSV, hue in turns [0, 1)."""
    r, g, b = x.unbind(1)
    top, _ = x.max(dim=1)
    bottom, _ = x.min(dim=1)
    span = top - bottom
    safe = torch.where(span > 0, span, torch.ones_like(span))
    hue = torch.where(top == g, (b - r) / safe + 2, (r - g) / safe + 4)
    hue = torch.where(top == r, ((g - b) / safe) % 6, hue)
    hue = torch.where(span > 0, hue / 6, torch.zeros_like(hue))
    saturation = torch.where(top > 0, span / top.clamp(min=1e-12), torch.zeros_like(top))
    return torch.stack([hue, saturation, top], dim=1)


def hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) HSV (hue in turns) -> RGB in [0, 1]."""
    h, s, v = x.unbind(1)
    k = (torch.tensor([5.0, 3.0, 1.0])[None, :, None, None] + 6 * h[:, None]) % 6
    return v[:, None] - v[:, None] * s[:, None] * (torch.minimum(k, 4 - k).clamp(0, 1))


def adjust(x: torch.Tensor, op: int, value: torch.Tensor) -> torch.Tensor:
    """ColorJitter's op `op` (0 brightness, 1 contrast, 2 saturation, 3 hue) by `value`, (B,), per image."""
    v = value[:, None, None, None]
    if op == 0:
        return (x * v).clamp(0, 1)
    if op == 1:
        mean = to_gray(x).mean(dim=(1, 2, 3), keepdim=True)
        return (x * v + (1 - v) * mean).clamp(0, 1)
    if op == 2:
        return (x * v + (1 - v) * to_gray(x)).clamp(0, 1)
    hsv = rgb_to_hsv(x)
    hsv = torch.cat([(hsv[:, :1] + v) % 1, hsv[:, 1:]], dim=1)
    return hsv_to_rgb(hsv).clamp(0, 1)


def color_jitter(
    x: torch.Tensor, on: torch.Tensor, factors: torch.Tensor, order: torch.Tensor
) -> torch.Tensor:
    """ColorJitter on the images `on`: at position k of its `order` each image gets op order[:, k] with its
    factor from `factors` (B, 4)."""
    x = x.clone()
    for k in range(4):
        for op in range(4):
            pick = on & (order[:, k] == op)
            if pick.any():
                x[pick] = adjust(x[pick], op, factors[pick, op])
    return x


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Each image blurred with its own sigma: the separable kernel exp(-t^2 / (2 sigma^2)), normalized, over
    t = -r..r with r = int(3.5 sigma) (zero weights pad it to BLUR_MAX_SIZE), the border reflected."""
    n, c, h, w = x.shape
    half = BLUR_MAX_SIZE // 2
    t = torch.arange(-half, half + 1, dtype=torch.float32)
    radius = (3.5 * sigma).floor()
    kernel = torch.exp(-0.5 * (t / sigma[:, None]) ** 2) * (t.abs() <= radius[:, None])
    kernel = (kernel / kernel.sum(dim=1, keepdim=True)).repeat_interleave(c, dim=0)  # (n * c, size)
    flat = x.reshape(1, n * c, h, w)
    flat = F.conv2d(F.pad(flat, (half, half, 0, 0), mode="reflect"), kernel[:, None, None, :], groups=n * c)
    flat = F.conv2d(F.pad(flat, (0, 0, half, half), mode="reflect"), kernel[:, None, :, None], groups=n * c)
    return flat.reshape(n, c, h, w)
