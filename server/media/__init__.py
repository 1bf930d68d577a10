"""Media loading: fetch (data:, http(s)://, file://), decode images, sample video frames.

Everything a user can send as `image_url`, `video_url` or a scene view goes through here before the
prompt is built. The package has no vLLM import. Failures a user caused (bad URL, not an image, a
refused address, a malformed container, stream or frame, a video without a decodable frame, ...)
raise `MediaError`, which the server maps to HTTP 400; its message says what is wrong in plain
words and names the URL (data: URLs truncated).

Modules: `image` (decode, modes, EXIF, pixel limit), `video` (the sampler) with `gop` (the checked
stream, the demux probe, the GOP-aware pick decoder) and `threaded` (GOP ranges on several
threads), `fetch` (URLs and the SSRF policy), `cache` (decoded media by content), `loader` (the
async `MediaLoader`, typed for the server as `MediaLoaderProtocol`), `base` (`MediaError`,
`MediaLimits`). Pure, synchronous entry points: `decode_image(bytes)` and `sample_video(bytes | path)`.
"""

from server.media.base import MediaError, MediaLimits
from server.media.fetch import MAX_REDIRECTS, Fetcher, HostPolicy
from server.media.image import ImageDecoder, decode_image
from server.media.loader import MediaLoader, MediaLoaderProtocol
from server.media.video import VideoFrames, sample_video

__all__ = [
    "MAX_REDIRECTS",
    "Fetcher",
    "HostPolicy",
    "ImageDecoder",
    "MediaError",
    "MediaLimits",
    "MediaLoader",
    "MediaLoaderProtocol",
    "VideoFrames",
    "decode_image",
    "sample_video",
]
