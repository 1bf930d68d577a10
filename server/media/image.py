"""Image decoding: bytes -> 8-bit RGB Pillow image (formats, modes, EXIF, pixel limit).

`ImageDecoder(limits)` holds the limits it was built with; `decode_image(data, limits)` is the same
as a one-off function. Failures a user caused raise `MediaError` (HTTP 400).
"""

from __future__ import annotations

import io
import threading

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from server.media.base import MediaError, MediaLimits, check_size

__all__ = ["ImageDecoder", "decode_image", "to_rgb"]

# Formats a user may send. Leaves out plugins that run external programs (EPS -> Ghostscript)
# or that are not photos. Names this Pillow build does not know are left out (MPO comes in
# through the JPEG plugin).
Image.init()
IMAGE_FORMATS = tuple(
    name
    for name in ("PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF", "PPM", "TGA", "ICO", "AVIF", "JPEG2000", "QOI")
    if name in Image.OPEN
)

_pillow_limit_lock = threading.Lock()

# Pillow's bomb check: an error past twice its limit, a warning past it (an exception where
# warnings are errors, as in the tests); a header past our own limit is refused either way.
_BOMB = (Image.DecompressionBombError, Image.DecompressionBombWarning)


def _allow_in_pillow(max_pixels: int) -> None:
    """Make sure Pillow's own bomb check does not refuse what the operator allowed.

    Pillow has no per-call pixel limit, only the process-wide `Image.MAX_IMAGE_PIXELS` (a warning
    past it, an error past twice that). Our limit, checked from the header before decoding, is the
    one that counts, so Pillow's is raised to it when lower (never lowered). Called once per
    decoder, at construction.
    """
    with _pillow_limit_lock:
        current = Image.MAX_IMAGE_PIXELS
        if current is not None and current < max_pixels:
            Image.MAX_IMAGE_PIXELS = max_pixels


def to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB; transparency composited on white.

    16-bit grayscale (I;16*, and I from 16-bit files) is scaled by 1/257 (65535 -> 255); float (F)
    images in 0..1 are scaled by 255, others clipped to 0..255.
    """
    mode = img.mode
    if mode == "RGB" and "transparency" not in img.info:
        return img
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        arr = np.asarray(img).astype(np.float64)
        arr = np.clip(np.rint(arr / 257.0), 0, 255).astype(np.uint8)
        return Image.fromarray(arr, mode="L").convert("RGB")
    if mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        if np.nanmax(arr, initial=0.0) <= 1.0:
            arr = arr * 255.0
        arr = np.clip(np.nan_to_num(np.rint(arr)), 0, 255).astype(np.uint8)
        return Image.fromarray(arr, mode="L").convert("RGB")
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info
    if has_alpha:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


class ImageDecoder:
    """Decodes image bytes under fixed limits (`limits.max_media_bytes`, `limits.max_image_pixels`).

    Thread-safe: holds only its limits, so one decoder serves every worker thread.
    """

    def __init__(self, limits: MediaLimits = MediaLimits()):
        self.limits = limits
        _allow_in_pillow(limits.max_image_pixels)

    def decode(self, data: bytes) -> Image.Image:
        """Decode image bytes into an 8-bit RGB Pillow image.

        EXIF orientation is applied; every mode (RGBA, LA, P, CMYK, 16-bit grayscale, 1-bit, ...)
        is converted to RGB with transparency composited on white; of an animated image (GIF, APNG,
        WebP) only the first frame is used. The declared size is checked against
        `limits.max_image_pixels` from the header, before any pixel is decoded.

        Raises MediaError: empty input, not an image, too many pixels, truncated or corrupt data.
        """
        limits = self.limits
        check_size(data, "image", limits)
        too_many = f"the image declares more pixels than the limit of {limits.max_image_pixels}"
        try:
            img = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)  # reads the header only
        except _BOMB:
            raise MediaError(too_many) from None
        except UnidentifiedImageError:
            raise MediaError(
                "the data is not a readable image (an unknown format, or a truncated or corrupt file)"
            ) from None
        except Exception as exc:  # noqa: BLE001 - any Pillow plugin failure on a bad header
            raise MediaError(f"the image header cannot be read ({exc})") from None
        width, height = img.size
        if width * height > limits.max_image_pixels:
            raise MediaError(
                f"the image is {width}x{height} = {width * height} pixels, more than the limit of "
                f"{limits.max_image_pixels} pixels"
            )
        try:
            if getattr(img, "is_animated", False):
                img.seek(0)
            img.load()
            shown: Image.Image = img
            try:
                shown = ImageOps.exif_transpose(img)
            except Exception:  # noqa: BLE001 - a broken EXIF block must not lose the image
                pass
            return to_rgb(shown)
        except _BOMB:
            raise MediaError(too_many) from None
        except Exception as exc:  # noqa: BLE001 - truncated / corrupt data, unsupported mode
            raise MediaError(f"the image data is truncated or corrupt ({exc})") from None


def decode_image(data: bytes, limits: MediaLimits = MediaLimits()) -> Image.Image:
    """`ImageDecoder(limits).decode(data)`: 8-bit RGB Pillow image. Raises MediaError."""
    return ImageDecoder(limits).decode(data)
