"""Image preprocessing benchmark: `model_adapter.preprocess.preprocess_images` versus transformers.

Makes 16 JPEGs per size (1080p and 4K, photo-like: smooth colour fields plus noise), decodes them
once with our `server.media.decode_image`, then times both preprocessors on the same Pillow images
(best of N rounds, alternating) and prints images/s, the ratio ours / transformers and the max
absolute difference of the pixel values. transformers' processor is the Pillow one
(`SiglipImageProcessorPil`; the torchvision backend is not installed on CPU machines) configured
as the checkpoint's preprocessor_config.json: 384x384 bicubic, rescale 1/255, mean = std = 0.5.

    python bench/preprocess.py            # 16 images per size, best of 5 rounds
    python bench/preprocess.py --quick    # 2 images per size, 1 round (smoke run)
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SIZES = {"1080p": (1920, 1080), "4K": (3840, 2160)}


def make_jpegs(count: int, width: int, height: int, seed: int = 0) -> list[bytes]:
    """`count` JPEG files (quality 90) of width x height with photo-like content."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (count, 9, 16, 3), dtype=np.uint8)
    out = []
    for k in range(count):
        base = Image.fromarray(small[k]).resize((width, height), Image.Resampling.BICUBIC)
        arr = np.asarray(base, dtype=np.int16) + rng.integers(-12, 13, (height, width, 3), dtype=np.int16)
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def transformers_processor():
    """transformers' Pillow-backed SigLIP processor with the published checkpoint's settings."""
    try:
        from transformers import SiglipImageProcessorPil as Processor
    except ImportError:  # older transformers: the slow processor is the Pillow one
        from transformers import SiglipImageProcessor as Processor
    return Processor(
        do_resize=True,
        size={"height": 384, "width": 384},
        resample=3,  # PIL.Image.BICUBIC
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
        do_convert_rgb=True,
    )


def best_of(fn, images, rounds: int) -> tuple[float, np.ndarray]:
    best, out = float("inf"), None
    for _ in range(rounds):
        t0 = time.perf_counter()
        out = fn(images)
        best = min(best, time.perf_counter() - t0)
    return best, out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="2 images per size, 1 round")
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    count = 2 if args.quick else args.images
    rounds = 1 if args.quick else max(1, args.rounds)

    from model_adapter.preprocess import preprocess_images
    from server.media import MediaLimits, decode_image

    processor = transformers_processor()

    def ours(images):
        return preprocess_images(images)

    def theirs(images):
        return np.asarray(processor(images=images, return_tensors="np")["pixel_values"])

    print(f"image preprocessing to 3x384x384, {count} JPEGs per size, best of {rounds} rounds")
    header = (
        f"{'size':<6} {'decode img/s':>12} {'ours img/s':>11} {'hf img/s':>9} "
        f"{'ours/hf':>8} {'max |diff|':>11}"
    )
    print(header)
    print("-" * len(header))
    ratios, diffs = {}, {}
    limits = MediaLimits()
    for name, (width, height) in SIZES.items():
        jpegs = make_jpegs(count, width, height)
        t0 = time.perf_counter()
        images = [decode_image(data, limits) for data in jpegs]
        decode_s = time.perf_counter() - t0
        ours(images[:1]), theirs(images[:1])  # warm-up
        t_ours = t_theirs = float("inf")
        out_ours = out_theirs = None
        for _ in range(rounds):  # alternate, keep the best of each
            t, out_ours = best_of(ours, images, 1)
            t_ours = min(t_ours, t)
            t, out_theirs = best_of(theirs, images, 1)
            t_theirs = min(t_theirs, t)
        assert out_ours.shape == out_theirs.shape == (count, 3, 384, 384), (out_ours.shape, out_theirs.shape)
        diff = float(np.max(np.abs(out_ours.astype(np.float64) - out_theirs.astype(np.float64))))
        ratios[name] = t_theirs / t_ours
        diffs[name] = diff
        print(
            f"{name:<6} {count / decode_s:>12.1f} {count / t_ours:>11.1f} {count / t_theirs:>9.1f} "
            f"{ratios[name]:>7.2f}x {diff:>11.2e}",
            flush=True,
        )
    print(
        "ratio ours/transformers: "
        + ", ".join(f"{k}={v:.2f}x (max |diff| {diffs[k]:.1e})" for k, v in ratios.items())
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
