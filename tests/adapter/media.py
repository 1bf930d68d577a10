"""Deterministic test images and frames for the adapter tests."""

from __future__ import annotations

import numpy as np
from PIL import Image


def gradient_image(width: int, height: int, seed: int, mode: str = "RGB") -> Image.Image:
    """A ``width`` x ``height`` image with gradients and noise, converted to ``mode``."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack(
        [
            (x * 255 // max(width - 1, 1)),
            (y * 255 // max(height - 1, 1)),
            ((x + y) * 127 // max(width + height - 2, 1)),
        ],
        axis=-1,
    )
    noise = rng.integers(0, 64, size=base.shape)
    rgb = Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8), "RGB")
    if mode == "RGB":
        return rgb
    if mode == "RGBA":
        alpha = Image.fromarray(rng.integers(0, 255, (height, width), dtype=np.uint8), "L")
        out = rgb.convert("RGBA")
        out.putalpha(alpha)
        return out
    if mode == "P":
        return rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=32)
    return rgb.convert(mode)


def video_frames(num_frames: int, width: int = 96, height: int = 64, seed: int = 7) -> np.ndarray:
    """``(num_frames, height, width, 3)`` uint8 frames of a moving gradient."""
    return np.stack(
        [np.asarray(gradient_image(width, height, seed + i)) for i in range(num_frames)]
    )
