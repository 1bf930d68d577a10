"""Media type detection from content (magic bytes) and ``data:`` URL encoding.

The media type of a file is decided by its first bytes, never by its extension: a PNG saved as
``photo.jpg`` is sent as ``image/png``, and a text file named ``clip.mp4`` is refused.
"""

from __future__ import annotations

import base64
import io
import os
from typing import Any, Literal

from ._exceptions import MediaError

__all__ = [
    "IMAGE_TYPES",
    "VIDEO_TYPES",
    "sniff_media_type",
    "media_kind",
    "to_data_url",
    "is_url",
    "is_pil_image",
    "pil_to_png_bytes",
    "read_source",
]

IMAGE_TYPES = frozenset(
    {"image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp", "image/tiff"}
)
VIDEO_TYPES = frozenset(
    {"video/mp4", "video/quicktime", "video/webm", "video/x-matroska", "video/x-msvideo", "video/mp2t"}
)

# How many leading bytes are enough for every check below (MPEG-TS needs three 188/192-byte packets).
SNIFF_BYTES = 1024

_URL_SCHEMES = ("http://", "https://", "data:", "file://")


def _is_mpeg_ts(head: bytes) -> bool:
    """Sync byte 0x47 at the start of three consecutive 188-byte (TS) or 192-byte (M2TS) packets."""
    for size, offset in ((188, 0), (192, 4)):
        positions = [offset + k * size for k in range(3)]
        if positions[-1] < len(head) and all(head[p] == 0x47 for p in positions):
            return True
    return False


def _is_bmp(head: bytes) -> bool:
    """``BM``, zero reserved bytes and a known DIB header size (so a text file starting "BM" is not a BMP)."""
    if head[:2] != b"BM" or len(head) < 18 or head[6:10] != b"\x00\x00\x00\x00":
        return False
    return int.from_bytes(head[14:18], "little") in (12, 16, 40, 52, 56, 64, 108, 124)


def sniff_media_type(head: bytes) -> str | None:
    """Return the media type of content starting with ``head`` (its first bytes), or ``None``.

    Recognised: PNG, JPEG, GIF, WEBP, BMP, TIFF (images); MP4 / MOV (ISO BMFF ``ftyp``, QuickTime
    ``moov`` / ``mdat`` / ``wide`` / ``free`` atoms), WebM / Matroska (EBML ``1A45DFA3``, told apart by the
    DocType), AVI (``RIFF....AVI ``) and MPEG-TS (0x47 sync bytes every 188 or 192 bytes) (videos).
    Give at least the first 1024 bytes (:data:`SNIFF_BYTES`) for MPEG-TS and Matroska; 18 are enough
    for the rest.
    """
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "video/x-msvideo"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "image/tiff"
    if _is_bmp(head):
        return "image/bmp"
    if head[4:8] == b"ftyp":
        return "video/quicktime" if head[8:12] == b"qt  " else "video/mp4"
    if head[4:8] in (b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"):
        return "video/quicktime"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "video/webm" if b"webm" in head[:SNIFF_BYTES] else "video/x-matroska"
    if _is_mpeg_ts(head):
        return "video/mp2t"
    return None


def media_kind(media_type: str | None) -> Literal["image", "video"] | None:
    """``"image"`` / ``"video"`` for a supported media type, else ``None``."""
    if media_type in IMAGE_TYPES:
        return "image"
    if media_type in VIDEO_TYPES:
        return "video"
    return None


def to_data_url(data: bytes, media_type: str) -> str:
    """Encode ``data`` as ``data:<media_type>;base64,<...>`` (about 4/3 of ``len(data)`` characters)."""
    return f"data:{media_type};base64,{base64.b64encode(data).decode('ascii')}"


def is_url(value: Any) -> bool:
    """True for a ``str`` starting with ``http://``, ``https://``, ``data:`` or ``file://``."""
    return isinstance(value, str) and value.lower().startswith(_URL_SCHEMES)


def is_pil_image(value: Any) -> bool:
    """True for a Pillow image, checked without importing Pillow (it is an optional dependency)."""
    cls = type(value)
    return any(
        c.__module__.startswith("PIL.") and c.__name__ == "Image" for c in getattr(cls, "__mro__", (cls,))
    )


# Modes PNG can store as they are; everything else (CMYK, YCbCr, LAB, HSV, F, I;16...) is converted to RGB(A).
_PNG_MODES = {"1", "L", "LA", "I", "P", "RGB", "RGBA"}


def pil_to_png_bytes(img: Any) -> bytes:
    """Encode a Pillow image losslessly as PNG bytes (converting modes PNG cannot store to RGB / RGBA)."""
    if img.mode not in _PNG_MODES:
        img = img.convert("RGBA" if "A" in img.getbands() else "RGB")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def read_source(source: Any, what: str) -> bytes:
    """Read the bytes of a path (``str`` / ``os.PathLike``), bytes-like object or binary file object.

    Raises:
        FileNotFoundError / IsADirectoryError / PermissionError: for paths that cannot be read.
        MediaError: for empty content or an unsupported source type.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif isinstance(source, (str, os.PathLike)):
        with open(os.fspath(source), "rb") as fh:
            data = fh.read()
    elif hasattr(source, "read"):
        data = source.read()
        if not isinstance(data, (bytes, bytearray)):
            raise MediaError(f"{what}: file object must be opened in binary mode ('rb')")
        data = bytes(data)
    else:
        raise MediaError(f"{what}: unsupported source type {type(source).__name__}")
    if not data:
        raise MediaError(f"{what}: empty content")
    return data
