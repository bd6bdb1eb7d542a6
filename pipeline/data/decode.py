"""The one image decoder, used by `prepare`, `add-unlabeled` and `predict`, so that an image is the same
pixels wherever it is read.

`decoder_id` fingerprints it (its source code, Pillow and NumPy versions, size and channels): stored pixels
are reused only when made by the same decoder.
"""

from __future__ import annotations

import hashlib
import inspect
import re

import numpy as np
import PIL
from PIL import Image, ImageOps

# Refuse decompression bombs: far above any training image, far below what would exhaust memory.
Image.MAX_IMAGE_PIXELS = 64_000_000
ORIENTATION = 0x0112  # the EXIF tag


def decode_image(raw: bytes, image_size: int, channels: int) -> tuple[np.ndarray, tuple[int, int], str]:
    """Decode bytes to (H, W, C) uint8 at `image_size`, converted to L or RGB; returns pixels, size, mode.
    An EXIF orientation is applied first (`ImageOps.exif_transpose`), so `size` is the upright image's."""
    import io
    import warnings

    with warnings.catch_warnings():  # PIL only warns between MAX_IMAGE_PIXELS and twice that: refuse both
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(raw))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
            raise ValueError(f"image too large: {err}") from None
    with img:
        img.load()
        mode = img.mode
        if img.getexif().get(ORIENTATION, 1) != 1:  # a camera's rotated JPEG: upright, as viewers show it
            img = ImageOps.exif_transpose(img)
        size = img.size
        if mode in ("I;16", "I;16B", "I;16L", "I"):  # 16/32-bit grayscale: rescale to 8 bits, not clip
            arr = np.asarray(img, dtype=np.float64)
            hi = arr.max() or 1.0
            img = Image.fromarray((arr / hi * 255).round().astype(np.uint8), mode="L")
        if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
            img = img.convert("RGBA")  # composite transparency on white rather than on black garbage
            background = Image.new("RGBA", img.size, (255, 255, 255, 255))
            img = Image.alpha_composite(background, img)
        img = img.convert("L" if channels == 1 else "RGB")
        if img.size != (image_size, image_size):
            img = img.resize((image_size, image_size), Image.Resampling.BILINEAR)
        pixels = np.asarray(img, dtype=np.uint8).reshape(image_size, image_size, channels)
    return pixels, size, mode


def decode_error_reason(err: Exception) -> str:
    """The reason for the manifest, the same in every run: PIL's messages name a buffer by its address."""
    message = re.sub(r"<[^<>]* at 0x[0-9a-fA-F]+>", "<bytes>", str(err))
    return f"cannot decode: {type(err).__name__}: {message}"[:300]


def decoder_id(image_size: int, channels: int) -> str:
    """What stored pixels were made with: the decoder's code, Pillow and NumPy versions, size and channels."""
    # decode_image's source is part of the key: any edit to it, even a comment, invalidates stored pixels
    source = inspect.getsource(decode_image)
    key = f"{source}|{PIL.__version__}|{np.__version__}|{image_size}|{channels}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]
