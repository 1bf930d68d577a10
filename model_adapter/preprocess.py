"""Image preprocessing of LLaVA-NeXT-Interleave, equal to transformers' ``SiglipImageProcessor``.

Resize to 384x384 with Pillow's bicubic filter (no crop, no padding, aspect ratio not kept), rescale
by 1/255, normalise with mean = std = 0.5 (values from the published ``preprocessor_config.json``).
One Pillow resize per image (run on a small thread pool: Pillow releases the GIL while it
resamples) and one table lookup for rescale + normalise (a 256-entry float32 table computed with
exactly transformers' arithmetic, so values are identical): see ``bench/preprocess.py``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import numpy as np
from PIL import Image

IMAGE_SIZE = 384
"""Input side in pixels of SigLIP-so400m-patch14-384 (``vision_config.image_size``)."""
IMAGE_MEAN = (0.5, 0.5, 0.5)
IMAGE_STD = (0.5, 0.5, 0.5)
RESCALE_FACTOR = 1 / 255


def _to_rgb(image: Image.Image) -> Image.Image:
    # Same as transformers' ``convert_to_rgb`` (a plain ``convert("RGB")``); the server's media loader
    # has already composited any transparency on white before images reach the model.
    return image if image.mode == "RGB" else image.convert("RGB")


def resize_image(image: Image.Image, size: int = IMAGE_SIZE) -> np.ndarray:
    """Resize one image to ``size`` x ``size`` (bicubic) and return it as uint8.

    Returns:
        ``(size, size, 3)`` uint8 RGB array.
    """
    image = _to_rgb(image)
    if image.size != (size, size):
        image = image.resize((size, size), resample=Image.Resampling.BICUBIC)
    return np.asarray(image, dtype=np.uint8)


@lru_cache(maxsize=1)
def _normalize_table() -> np.ndarray:
    """``(x * (1/255) - mean) / std`` for every uint8 value x, float32, shape ``(256, 3)``."""
    x = np.arange(256, dtype=np.float32)[:, None] * np.float32(RESCALE_FACTOR)
    mean = np.asarray(IMAGE_MEAN, dtype=np.float32)
    std = np.asarray(IMAGE_STD, dtype=np.float32)
    table = (x - mean) / std
    table.setflags(write=False)
    return table


def normalize(pixels: np.ndarray) -> np.ndarray:
    """Rescale and normalise uint8 RGB pixels, channels first.

    Args:
        pixels: ``(..., H, W, 3)`` uint8.

    Returns:
        ``(..., 3, H, W)`` float32 in [-1, 1]: ``(x / 255 - 0.5) / 0.5``, computed in the order
        transformers uses (rescale, then normalise) so values match to float32 rounding. Done as a
        per-channel table lookup, equal to the direct arithmetic.
    """
    table = _normalize_table()
    chw = np.moveaxis(pixels, -1, -3)  # (..., 3, H, W) view
    out = np.empty(chw.shape, dtype=np.float32)
    for c in range(3):
        np.take(table[:, c], chw[..., c, :, :], out=out[..., c, :, :])
    return out


@lru_cache(maxsize=1)
def _resize_pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1), thread_name_prefix="siglip-resize")


def preprocess_images(images: Sequence[Image.Image], size: int = IMAGE_SIZE) -> np.ndarray:
    """Preprocess images for the SigLIP tower.

    Args:
        images: Pillow images of any size and mode (converted to RGB as transformers does).
        size: target side in pixels (``vision_config.image_size``).

    Returns:
        ``pixel_values`` of shape ``(N, 3, size, size)``, float32.
    """
    if not images:
        return np.zeros((0, 3, size, size), dtype=np.float32)
    if len(images) == 1:
        resized = [resize_image(images[0], size)]
    else:
        resized = list(_resize_pool().map(lambda im: resize_image(im, size), images))
    return normalize(np.stack(resized))


def preprocess_frames(frames: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """Preprocess the frames of one video, each exactly as an image.

    Args:
        frames: ``(T, H, W, 3)`` uint8 RGB frames (or a sequence of Pillow images).
        size: target side in pixels.

    Returns:
        ``(T, 3, size, size)`` float32.
    """
    if isinstance(frames, np.ndarray):
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"video frames must be (T, H, W, 3), got {frames.shape}")
        images = [Image.fromarray(np.ascontiguousarray(f, dtype=np.uint8)) for f in frames]
    else:
        images = list(frames)
    return preprocess_images(images, size)
