"""What every media module shares: the error users see and the operator's limits."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

_URL_SHOWN_CHARS = 80
_DATA_URL_SHOWN_CHARS = 40


class MediaError(ValueError):
    """A media item cannot be used; the message says why in words a user understands (HTTP 400)."""


@dataclass(frozen=True)
class MediaLimits:
    """Operator limits for media items.

    max_media_bytes: bytes per fetched or inlined item.
    max_image_pixels: width * height per image or video frame, checked from the header before any
        pixel is decoded.
    fetch_timeout_seconds: whole fetch of one http(s) item (connect, redirects, body).
    allowed_media_dir: file:// URLs are served only below this directory (resolved, symlinks
        followed); None refuses every file:// URL.
    allowed_remote_hosts: hostnames (exact, case-insensitive) or IP addresses / CIDRs that may be
        fetched although they are loopback, private, link-local, ...
    max_frames: upper bound for the number of frames sampled from one video.
    """

    max_media_bytes: int = 64 * 2**20
    max_image_pixels: int = 50_000_000
    fetch_timeout_seconds: float = 10.0
    allowed_media_dir: Path | None = None
    allowed_remote_hosts: tuple[str, ...] = ()
    max_frames: int = 64


def shown_url(url: str) -> str:
    """The URL as it may appear in an error message (data: URLs and long URLs truncated)."""
    if url.startswith("data:"):
        head = url[:_DATA_URL_SHOWN_CHARS]
        return head + "..." if len(url) > _DATA_URL_SHOWN_CHARS else head
    return url if len(url) <= _URL_SHOWN_CHARS else url[:_URL_SHOWN_CHARS] + "..."


def check_size(data: bytes | bytearray | memoryview, what: str, limits: MediaLimits) -> None:
    """Raise MediaError if `data` (the bytes of one `what`: "image", "video") is empty or too large."""
    if len(data) == 0:
        raise MediaError(f"the {what} is empty")
    if len(data) > limits.max_media_bytes:
        raise MediaError(
            f"the {what} is {len(data)} bytes, more than the limit of {limits.max_media_bytes} bytes"
        )
