"""Media type detection from content (magic bytes) and ``data:`` URL encoding of local media.

The media type of a file is decided by its first bytes, never by its extension: a PNG saved as
``photo.jpg`` is sent as ``image/png``, and a text file named ``clip.mp4`` is refused.
"""

from __future__ import annotations

import base64
import io
import os
from typing import Any, Literal

IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp", "image/tiff"})
VIDEO_TYPES = frozenset(
    {"video/mp4", "video/quicktime", "video/webm", "video/x-matroska", "video/x-msvideo", "video/mp2t"}
)

# How many leading bytes are enough for every check below (MPEG-TS needs three 188/192-byte packets).
SNIFF_BYTES = 1024

_URL_SCHEMES = ("http://", "https://", "data:", "file://")
# Modes PNG can store as they are; everything else (CMYK, YCbCr, LAB, HSV, F, I;16...) is converted to RGB(A).
_PNG_MODES = {"1", "L", "LA", "I", "P", "RGB", "RGBA"}


class MediaError(ValueError):
    """A builder could not turn its input into a content part: unreadable or empty content, content that
    is not a supported image / video format (detected from magic bytes), or inconsistent arguments
    (e.g. labels that do not match the views)."""


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
    return "image" if media_type in IMAGE_TYPES else "video" if media_type in VIDEO_TYPES else None


def is_url(value: Any) -> bool:
    """True for a ``str`` starting with ``http://``, ``https://``, ``data:`` or ``file://``."""
    return isinstance(value, str) and value.lower().startswith(_URL_SCHEMES)


def is_pil_image(value: Any) -> bool:
    """True for a Pillow image, checked without importing Pillow (it is an optional dependency)."""
    return any(c.__module__.startswith("PIL.") and c.__name__ == "Image" for c in type(value).__mro__)


def _read(source: Any, what: str) -> bytes:
    """The bytes of a path (``str`` / ``os.PathLike``), bytes-like object or binary file object.

    Raises:
        FileNotFoundError / IsADirectoryError / PermissionError: a path that cannot be read.
        MediaError: empty content, a text-mode file object, or an unsupported source type.
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


def _png_bytes(img: Any) -> bytes:
    """A Pillow image as lossless PNG bytes (modes PNG cannot store become RGB / RGBA)."""
    if img.mode not in _PNG_MODES:
        img = img.convert("RGBA" if "A" in img.getbands() else "RGB")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def media_url(source: Any, want: Literal["image", "video"]) -> str:
    """A URL for ``source``: URL strings pass through; paths, bytes, binary file objects and Pillow images
    (images only, sent as PNG) become ``data:<type>;base64,...`` URLs (about 4/3 of the file size),
    the type detected from the content.

    Raises:
        FileNotFoundError: a path that does not exist.
        MediaError: empty or unrecognised content, or content of the other kind (a video given as image).
    """
    if is_url(source):
        return str(source)
    what = f"{want} {source!r}" if isinstance(source, (str, os.PathLike)) else want
    media_type: str | None = "image/png"
    if want == "image" and is_pil_image(source):
        data = _png_bytes(source)
    else:
        data = _read(source, what)
        media_type = sniff_media_type(data[:SNIFF_BYTES])
        kind = media_kind(media_type)
        if kind is None:
            raise MediaError(
                f"{what}: unrecognised content (first bytes {data[:12]!r}); images must be PNG, JPEG, GIF, "
                "WEBP, BMP or TIFF and videos MP4, MOV, WebM, MKV, AVI or MPEG-TS"
            )
        if kind != want:
            raise MediaError(
                f"{what}: content is {media_type}, not {'an' if want == 'image' else 'a'} {want}"
            )
    return f"data:{media_type};base64,{base64.b64encode(data).decode('ascii')}"
