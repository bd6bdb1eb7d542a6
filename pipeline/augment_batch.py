"""Strong augmentation of a whole batch of tensors at once (`student.strong.backend: tensor`).

The policy of `augment.strong`: FixMatch's flip + shift, then `num_ops` ops drawn per image without
replacement from RandAugment's list (Cubuk et al. 2020) at magnitude m/10, then cutout. Here it works on
(B, C, H, W) floats in [0, 1] with a few tensor ops per batch instead of one albumentations call per image:

- every image draws its own ops and values, all from one seeded torch.Generator, in a fixed order of draws;
- flip + shift of every image is one gather of whole pixels (reflect padding); the geometric RandAugment
  ops (rotate, shear, translate) of every image are composed into one affine matrix per image and applied by
  one `grid_sample` (bilinear, zero fill, as albumentations' Affine);
- the photometric ops do what augment.randaugment_ops' albumentations ops do, value for value: brightness
  adds up to ±0.9 m and contrast multiplies by 1 ± 0.9 m (RandomBrightnessContrast), sharpness is Sharpen's
  kernel, equalize is cv2.equalizeHist (albumentations' Equalize) and autocontrast the same equalisation
  (albumentations' AutoContrast, method "cdf", is a close variant); solarize and posterize are torchvision's
  batched functional ops, written out. Each op runs on the images
  that drew it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pipeline.augment_weak import _flip_shift
from pipeline.config.student import StrongAugment

GEOMETRIC = ("rotate", "shear_x", "shear_y", "translate_x", "translate_y")
PHOTOMETRIC = ("brightness", "contrast", "sharpness", "solarize", "posterize", "autocontrast", "equalize")
OPS = GEOMETRIC + PHOTOMETRIC
CUTOUT_FILL = 127 / 255  # albumentations' CoarseDropout fill in augment.strong


class BatchStrong:
    """Callable: (B, C, H, W) floats in [0, 1] -> the same batch strongly augmented. Its generator's state is
    in `state_dict`, so a resume point can carry it like a module's."""

    def __init__(self, cfg: StrongAugment, image_size: int, seed: int):
        self.cfg, self.image_size = cfg, image_size
        self.generator = torch.Generator().manual_seed(seed)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.generator.set_state(state["generator"])

    def _uniform(self, n: int, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
        return low + (high - low) * torch.rand(n, generator=self.generator)

    def choose_ops(self, n: int) -> torch.Tensor:
        """(n, len(OPS)) bool: `num_ops` distinct ops per image, uniformly."""
        ranks = torch.rand(n, len(OPS), generator=self.generator).argsort(dim=1).argsort(dim=1)
        return ranks < self.cfg.num_ops

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        n, m = len(x), self.cfg.magnitude / 10
        # Every draw happens for every image, in this order, whatever ops it chose: the draws of a batch
        # depend only on its size, so two runs from the same generator state augment identically.
        flip = self._uniform(n) < 0.5
        pad = max(1, self.image_size // 8)
        shift = torch.randint(-pad, pad + 1, (n, 2), generator=self.generator)
        chosen = self.choose_ops(n)
        values = {op: self._uniform(n, -1.0, 1.0) for op in OPS}  # a signed draw per op and image
        values["lightness"] = self._uniform(n, 0.5, 1.0)  # Sharpen's lightness
        holes = torch.rand(n, 2, generator=self.generator)

        x = _flip_shift(x.contiguous(), flip, shift).contiguous()  # a new tensor: the ops below write into it
        x = _geometric(x, chosen, values, m)
        x = _photometric(x, chosen, values, m)
        if self.cfg.cutout > 0:
            x = _cutout(x, holes, max(1, round(self.cfg.cutout * self.image_size)))
        return x.contiguous(memory_format=torch.channels_last)


def _geometric(x: torch.Tensor, chosen: torch.Tensor, values: dict, m: float) -> torch.Tensor:
    """Rotate and shear by up to 30 m degrees, translate by up to 0.3 m of the side, as composed per image;
    the images that drew none of these pass unchanged."""
    n = len(x)
    matrix = torch.eye(3).repeat(n, 1, 1)
    for op in GEOMETRIC:
        k = OPS.index(op)
        on = chosen[:, k]
        v = values[op] * m
        step = torch.eye(3).repeat(n, 1, 1)
        if op == "rotate":
            a = torch.deg2rad(30 * v)
            step[:, 0, 0], step[:, 0, 1], step[:, 1, 0], step[:, 1, 1] = a.cos(), -a.sin(), a.sin(), a.cos()
        elif op == "shear_x":
            step[:, 0, 1] = torch.tan(torch.deg2rad(30 * v))
        elif op == "shear_y":
            step[:, 1, 0] = torch.tan(torch.deg2rad(30 * v))
        elif op == "translate_x":
            step[:, 0, 2] = 2 * 0.3 * v  # normalised coordinates span 2
        else:
            step[:, 1, 2] = 2 * 0.3 * v
        matrix = torch.where(on[:, None, None], step @ matrix, matrix)
    moved = chosen[:, : len(GEOMETRIC)].any(dim=1)
    if not moved.any():
        return x
    grid = F.affine_grid(matrix[moved, :2], [int(moved.sum()), *x.shape[1:]], align_corners=False)
    x[moved] = F.grid_sample(x[moved], grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return x


def _sharpen(x: torch.Tensor, alpha: torch.Tensor, lightness: torch.Tensor) -> torch.Tensor:
    """albumentations' Sharpen, per image: (1 - alpha) x + alpha (x * K), K = [[-1, -1, -1], [-1, 8 + L, -1],
    [-1, -1, -1]] with L the lightness, the border reflected (reflect-101, as cv2.filter2D)."""
    c = x.shape[1]
    ring = torch.ones(c, 1, 3, 3)
    ring[:, :, 1, 1] = 0
    neighbours = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), ring, groups=c)
    a, light = alpha[:, None, None, None], lightness[:, None, None, None]
    return ((1 - a) * x + a * ((8 + light) * x - neighbours)).clamp_(0, 1)


def _equalize(x: torch.Tensor) -> torch.Tensor:
    """Histogram equalisation of each image and channel of uint8 (B, C, H, W), as cv2.equalizeHist:
    lut[v] = round(255 (cdf[v] - cdf[min]) / (pixels - cdf[min])), min the darkest value present; an image
    of one value is left as it is."""
    b, c, h, w = x.shape
    v = x.reshape(b * c, h * w).long()
    hist = torch.zeros(b * c, 256).scatter_add_(1, v, torch.ones(b * c, h * w))
    cdf = hist.cumsum(dim=1)
    darkest = hist.gather(1, (hist > 0).float().argmax(dim=1, keepdim=True))
    spread = (h * w - darkest).clamp_(min=1)
    lut = ((cdf - darkest) * 255 / spread).round_().clamp_(0, 255)
    lut = torch.where(darkest == h * w, torch.arange(256.0), lut)
    return lut.gather(1, v).to(torch.uint8).reshape(b, c, h, w)


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    return x.mul(255).round_().to(torch.uint8)


def _photometric(x: torch.Tensor, chosen: torch.Tensor, values: dict, m: float) -> torch.Tensor:
    bits = max(1, 8 - round(4 * m))
    for op in PHOTOMETRIC:
        on = chosen[:, OPS.index(op)]
        if not on.any():
            continue
        sub, v = x[on], values[op][on]
        if op == "brightness":  # albumentations' RandomBrightnessContrast: x + b, then x * c
            out = (sub + 0.9 * m * v[:, None, None, None]).clamp_(0, 1)
        elif op == "contrast":
            out = (sub * (1 + 0.9 * m * v[:, None, None, None])).clamp_(0, 1)
        elif op == "sharpness":  # augment.randaugment_ops' Sharpen(alpha=(0.1, m))
            alpha = 0.1 + (max(0.1, m) - 0.1) * (v + 1) / 2
            out = _sharpen(sub, alpha, values["lightness"][on])
        elif op == "solarize":  # torchvision's solarize and posterize, written out: its import costs ~2 s
            out = torch.where(sub >= 1 - m, 1.0 - sub, sub) if m > 0 else sub
        elif op == "posterize":
            out = (_to_uint8(sub) & (((1 << bits) - 1) << (8 - bits))).float().div_(255)
        else:  # autocontrast, equalize: cv2.equalizeHist (see the module docstring)
            out = _equalize(_to_uint8(sub)).float().div_(255)
        x[on] = out
    return x


def _cutout(x: torch.Tensor, holes: torch.Tensor, side: int) -> torch.Tensor:
    """One side x side square per image, filled with grey, its corner uniform over the positions that keep
    it inside the image (albumentations' CoarseDropout)."""
    _, _, h, w = x.shape
    top = (holes[:, 0] * (h - side + 1)).floor().long()
    left = (holes[:, 1] * (w - side + 1)).floor().long()
    rows, cols = torch.arange(h), torch.arange(w)
    in_rows = (rows >= top[:, None]) & (rows < top[:, None] + side)
    in_cols = (cols >= left[:, None]) & (cols < left[:, None] + side)
    mask = (in_rows[:, :, None] & in_cols[:, None, :])[:, None]  # (B, 1, H, W)
    return torch.where(mask, torch.tensor(CUTOUT_FILL, dtype=x.dtype), x)
