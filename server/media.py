"""Media loading: fetch (data:, http(s)://, file://), decode images, sample video frames.

Everything a user can send as `image_url`, `video_url` or a scene view goes through here before the
prompt is built. The module has no vLLM import. Failures a user caused (bad URL, not an image, a
refused address, a video without a decodable frame, ...) raise `MediaError`, which the server maps
to HTTP 400; its message says what is wrong in plain words and names the URL (data: URLs truncated).

Pure, synchronous entry points: `decode_image(bytes)` and `sample_video(bytes | path)`.
`MediaLoader` wraps them for the async server: fetching is async (httpx), decoding and sampling run
in a bounded thread pool owned by the loader, so the event loop stays free.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import bisect
import io
import ipaddress
import os
import socket
import urllib.parse
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import av
import httpx
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from model_adapter.preprocess import resize_image

__all__ = [
    "MediaError",
    "MediaLimits",
    "MediaLoader",
    "VideoFrames",
    "decode_image",
    "sample_video",
]

MAX_REDIRECTS = 3
_URL_SHOWN_CHARS = 80
_USER_AGENT = "llava-interleave-serve media fetcher"

# Demuxers FFmpeg may pick for user bytes. A whitelist keeps playlist / concat demuxers (which
# open further URLs or files by themselves), text "video" demuxers (tty) and image sequences out.
_VIDEO_FORMATS = (
    "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,avi,flv,mpegts,mpeg,ogg,asf,gif,h264,hevc,m4v,"
    "mjpeg,ivf,nut,obu"
)


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


@dataclass
class VideoFrames:
    """Frames sampled from one video.

    frames: (T, H, W, 3) uint8 RGB, in time order, display rotation applied.
    timestamps: T presentation times in seconds from the first frame.
    duration: seconds from the first frame to the end of the last one (from packet timestamps).
    source_fps: average frame rate, source frames / duration (0.0 for a single frame).
    frame_indices: T indices of the kept frames among all source frames in presentation order.
    num_source_frames: frames the stream really holds (counted from its packets).
    decoded_frames: frames the decoder produced to get these (a cost measure; seeks keep it low).
    """

    frames: np.ndarray
    timestamps: list[float]
    duration: float
    source_fps: float = 0.0
    frame_indices: list[int] = field(default_factory=list)
    num_source_frames: int = 0
    decoded_frames: int = 0


def _shown(url: str) -> str:
    """The URL as it may appear in an error message (data: URLs and long URLs truncated)."""
    if url.startswith("data:"):
        head = url[:40]
        return head + "..." if len(url) > 40 else head
    return url if len(url) <= _URL_SHOWN_CHARS else url[:_URL_SHOWN_CHARS] + "..."


# --------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB; transparency composited on white."""
    mode = img.mode
    if mode == "RGB" and "transparency" not in img.info:
        return img
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16-bit grayscale (PNG, TIFF): 0..65535 -> 0..255. Pillow opens some 16-bit files as "I".
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


# Formats a user may send. Leaves out plugins that run external programs (EPS -> Ghostscript)
# or that are not photos. Names this Pillow build does not know are left out (MPO comes in
# through the JPEG plugin).
Image.init()
_IMAGE_FORMATS = tuple(
    name
    for name in ("PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF", "PPM", "TGA", "ICO", "AVIF", "JPEG2000", "QOI")
    if name in Image.OPEN
)


def decode_image(data: bytes, limits: MediaLimits = MediaLimits()) -> Image.Image:
    """Decode image bytes into an 8-bit RGB Pillow image.

    EXIF orientation is applied; every mode (RGBA, LA, P, CMYK, 16-bit grayscale, 1-bit, ...) is
    converted to RGB with transparency composited on white; of an animated image (GIF, APNG, WebP)
    only the first frame is used. The declared size is checked against `limits.max_image_pixels`
    from the header, before any pixel is decoded.

    Raises MediaError: empty input, not an image, too many pixels, truncated or corrupt data.
    """
    if not data:
        raise MediaError("the image is empty")
    if len(data) > limits.max_media_bytes:
        raise MediaError(
            f"the image is {len(data)} bytes, more than the limit of {limits.max_media_bytes} bytes"
        )
    too_many = f"the image declares more pixels than the limit of {limits.max_image_pixels}"
    pillow_limit = Image.MAX_IMAGE_PIXELS
    if pillow_limit is not None and pillow_limit < limits.max_image_pixels:
        # Pillow's own bomb check (a warning past MAX_IMAGE_PIXELS, an error past twice that) must
        # not refuse what the operator allowed: our limit, checked below, is the one that counts.
        Image.MAX_IMAGE_PIXELS = limits.max_image_pixels
    try:
        img = Image.open(io.BytesIO(data), formats=_IMAGE_FORMATS)  # reads the header only
    except Image.DecompressionBombError:
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
        try:
            img = ImageOps.exif_transpose(img)
        except Exception:  # noqa: BLE001 - a broken EXIF block must not lose the image
            pass
        return _to_rgb(img)
    except Image.DecompressionBombError:
        raise MediaError(too_many) from None
    except Exception as exc:  # noqa: BLE001 - truncated / corrupt data, unsupported mode
        raise MediaError(f"the image data is truncated or corrupt ({exc})") from None



# --------------------------------------------------------------------------------------------
# Video
# --------------------------------------------------------------------------------------------

_AV_ERRORS = (av.FFmpegError, OSError, EOFError)


@dataclass
class _Probe:
    times: list[int]  # presentation timestamps of all frames, sorted (stream time_base)
    keyframes: list[int]  # pts of the key frames, sorted
    keyframe_dts: dict[int, int]  # key frame pts -> its dts (some demuxers seek by dts)
    end: int  # end of the last frame (stream time_base)


def _open_container(source: bytes | str | Path) -> av.container.InputContainer:
    options = {"format_whitelist": _VIDEO_FORMATS}
    if isinstance(source, (bytes, bytearray, memoryview)):
        # Nested opens (playlists, references) get no protocol at all.
        options["protocol_whitelist"] = "none"
        return av.open(io.BytesIO(bytes(source)), mode="r", options=options)
    options["protocol_whitelist"] = "file"
    return av.open(str(source), mode="r", options=options)


def _probe(container: av.container.InputContainer, stream: av.VideoStream) -> _Probe:
    """Demux (no decoding) every packet of `stream`: frame times, key frames, real end."""
    times: list[int] = []
    keyframes: list[int] = []
    keyframe_dts: dict[int, int] = {}
    end = None
    try:
        for packet in container.demux(stream):
            ts = packet.pts if packet.pts is not None else packet.dts
            if ts is None or packet.size == 0:
                continue
            if packet.is_keyframe:
                keyframes.append(ts)
                keyframe_dts[ts] = min(ts, packet.dts) if packet.dts is not None else ts
            if packet.is_discard:
                continue
            times.append(ts)
            if packet.duration:
                stop = ts + packet.duration
                end = stop if end is None else max(end, stop)
    except _AV_ERRORS:
        pass  # a truncated or damaged file: keep what was read
    times = sorted(set(times))  # a broken file may repeat a timestamp
    keyframes = sorted(set(keyframes))
    if times:
        last_step = 0
        if len(times) > 1:
            last_step = int(np.median(np.diff(times[-min(len(times), 32) :])))
        end = max(end if end is not None else times[-1], times[-1] + last_step)
    return _Probe(times, keyframes, keyframe_dts, end or 0)


def _plan(probe: _Probe, count: int) -> list[int]:
    """Indices (into probe.times) of `count` distinct frames spread over the real duration.

    Each pick is the frame shown at the centre of one of `count` equal segments of the span from the
    first frame to the end of the last. When two centres fall on the same source frame (variable
    frame rate: a frame shown for a long time), the later pick moves to the next frame, so a clip
    with at least `count` frames always gives `count` distinct frames, in time order. A clip with
    fewer frames gives each of its frames once.
    """
    n = len(probe.times)
    if n <= count:
        return list(range(n))
    start = probe.times[0]
    span = probe.end - start
    shown = [
        max(0, bisect.bisect_right(probe.times, start + (i + 0.5) * span / count) - 1)
        for i in range(count)
    ]
    picks: list[int] = []
    for i, k in enumerate(shown):
        # strictly increasing, and leave room for the picks still to come
        k = max(k, picks[-1] + 1) if picks else k
        picks.append(min(k, n - count + i))
    for i in range(count - 2, -1, -1):  # a pick pushed back by the room rule keeps order
        picks[i] = min(picks[i], picks[i + 1] - 1)
    return picks


def _rotate(frame: np.ndarray, degrees: int) -> np.ndarray:
    """Apply a display rotation given counter-clockwise in degrees (multiples of 90)."""
    k = int(round(degrees / 90.0)) % 4
    return np.ascontiguousarray(np.rot90(frame, k)) if k else frame


def _decode_picks(
    container: av.container.InputContainer,
    fresh: bool,
    probe: _Probe,
    wanted: list[int],
    allow_seek: bool,
    careful: bool,
    thread_type: str = "AUTO",
) -> tuple[np.ndarray | None, dict[int, int], int, int, bool]:
    """Decode the frames whose pts are in `wanted` (sorted), GOP-aware; closes `container`.

    `fresh`: the container was just opened (it stands at the start); else the first run seeks.

    Decodes forward within a GOP and seeks (to the key frame at or before the next wanted pts) only
    when that key frame lies after the last decoded frame. A wanted frame that does not decode
    (damaged or missing data) is replaced by the nearest frame that did decode between the previous
    pick and the next wanted pts (earlier one first), or dropped.

    thread_type: FFmpeg's decoder threading ("AUTO" = frame + slice threads, "SLICE").
    careful: slice threads only (frame threads can take the frames queued before a decode error
    along) and every frame decoded; the caller uses it for a second pass on damaged files. The fast
    pass tells the decoder to skip non-reference frames (most B-frames) whose packet pts is not
    wanted: nothing refers to them, so the wanted frames decode exactly as in a full decode.

    Returns (frames, actual pts by wanted pts, frames decoded, decode errors, seek_overshot).
    frames is (len(wanted), H, W, 3) uint8 (or None if nothing decoded); its first len(actual)
    rows hold the frames of the wanted pts in `actual`, in order (frames are converted straight
    into it: no second copy). seek_overshot is True when a seek landed after its target: the
    caller then retries without seeking.
    """
    buffer: np.ndarray | None = None
    actual: dict[int, int] = {}
    decoded = 0
    errors = 0
    taken = -(2**63)  # pts of the last frame taken
    prev: tuple[int, av.VideoFrame] | None = None  # last decoded frame after `taken`, not taken

    def take(target: int, pts: int, frame: av.VideoFrame) -> bool:
        nonlocal taken, buffer
        try:
            rgb = _rotate(frame.to_ndarray(format="rgb24"), frame.rotation or 0)
        except _AV_ERRORS + (ValueError,):
            return False
        if buffer is None:
            buffer = np.empty((len(wanted), *rgb.shape), dtype=np.uint8)
        elif rgb.shape != buffer.shape[1:]:
            return False  # the size changed mid-stream: keep the first size
        buffer[len(actual)] = rgb
        actual[target] = pts
        taken = pts
        return True

    try:
        stream = container.streams.video[0]
        stream.thread_type = "SLICE" if careful else thread_type
        codec = stream.codec_context
        wanted_set = set(wanted)
        skipping = False
        i = 0
        first_run = True
        by_dts = False  # seek by the key frame's dts once a seek by pts overshot
        while i < len(wanted):
            target = wanted[i]
            kf_pos = bisect.bisect_right(probe.keyframes, target) - 1
            keyframe = probe.keyframes[kf_pos] if kf_pos >= 0 else None
            check_landing = False
            # A fresh container stands at the start: seek only past the first GOP.
            must_seek = first_run and not fresh
            if must_seek or (
                allow_seek
                and keyframe is not None
                and (not first_run or keyframe > probe.keyframes[0])
            ):
                try:
                    if keyframe is None or keyframe <= probe.keyframes[0]:
                        # The first GOP: seek to the start itself (some demuxers index by dts
                        # and miss a first key frame whose pts is later than its dts).
                        to = min(0, probe.times[0], keyframe if keyframe is not None else 0)
                    else:
                        to = probe.keyframe_dts.get(keyframe, keyframe) if by_dts else keyframe
                    container.seek(to, stream=stream, backward=True, any_frame=False)
                    check_landing = True
                except _AV_ERRORS:
                    if must_seek:
                        return buffer, actual, decoded, errors, True
                    allow_seek = False
            first_run = False
            need_seek = False
            for packet in container.demux(stream):
                if not careful:
                    skip = packet.pts is not None and packet.pts not in wanted_set
                    if skip != skipping:
                        codec.skip_frame = "NONREF" if skip else "DEFAULT"
                        skipping = skip
                try:
                    frames = packet.decode()
                except _AV_ERRORS:
                    errors += 1
                    continue  # a damaged packet: skip it, the decoder resynchronises
                for frame in frames:
                    decoded += 1
                    pts = frame.pts if frame.pts is not None else frame.dts
                    if pts is None or pts <= taken:
                        continue
                    if check_landing:
                        check_landing = False
                        if pts > target:
                            if by_dts:
                                return buffer, actual, decoded, errors, True
                            by_dts = True
                            need_seek = True  # the same target again, seeking by dts
                            break
                    if pts < wanted[i]:
                        prev = (pts, frame)
                        continue
                    # Wanted frames that never came out before this one: an earlier stand-in or none.
                    while i + 1 < len(wanted) and pts >= wanted[i + 1]:
                        if prev is not None:
                            take(wanted[i], *prev)
                            prev = None
                        i += 1
                    if take(wanted[i], pts, frame):
                        prev = None
                        i += 1
                    else:
                        continue
                    if i >= len(wanted):
                        break
                    nxt = bisect.bisect_right(probe.keyframes, wanted[i]) - 1
                    if allow_seek and nxt >= 0 and probe.keyframes[nxt] > pts:
                        need_seek = True
                        break
                if i >= len(wanted) or need_seek:
                    break
            else:
                # End of stream (demux's last, empty packet flushed the decoder).
                if check_landing:  # a seek that led to no frame at all
                    if by_dts:
                        return buffer, actual, decoded, errors, True
                    by_dts = True
                    continue
                if i < len(wanted) and prev is not None:
                    take(wanted[i], *prev)
                break
        return buffer, actual, decoded, errors, False
    finally:
        container.close()


def _check_sampling(num_frames: int, fps: float | None, limits: MediaLimits) -> None:
    """Raise MediaError unless 1 <= num_frames <= limits.max_frames and fps is None or > 0."""
    if isinstance(num_frames, bool) or not isinstance(num_frames, int):
        raise MediaError("num_frames must be an integer")
    if num_frames <= 0 or num_frames > limits.max_frames:
        raise MediaError(f"num_frames must be between 1 and {limits.max_frames}, got {num_frames}")
    if fps is not None and (
        isinstance(fps, bool) or not isinstance(fps, (int, float)) or not np.isfinite(fps) or fps <= 0
    ):
        raise MediaError(f"fps must be a positive number, got {fps}")


def sample_video(
    source: bytes | str | Path,
    *,
    num_frames: int = 16,
    fps: float | None = None,
    limits: MediaLimits = MediaLimits(),
) -> VideoFrames:
    """Sample frames from a video (bytes or a local path) uniformly over its real duration.

    The duration and frame times come from the demuxed packets' timestamps (not the container's
    frame count or duration fields), so variable frame rate and truncated files work. The span from
    the first frame to the end of the last is cut into `num_frames` equal segments and the frame
    shown at each segment's centre is taken; with `fps`, the count is floor(duration * fps),
    at least 1 and at most `num_frames` and `limits.max_frames` (num_frames caps fps, as in vLLM),
    still spread over the whole duration. A clip with
    fewer frames than segments gives each of its frames once. Damaged packets are skipped. Frames
    get their display rotation (multiples of 90 degrees) applied.

    Returns VideoFrames (frames (T, H, W, 3) uint8 RGB, timestamps in seconds).
    Raises MediaError: bad num_frames / fps, not a video, too many pixels per frame, no frame decodes.
    """
    _check_sampling(num_frames, fps, limits)
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise MediaError("the video is empty")
        if len(source) > limits.max_media_bytes:
            raise MediaError(
                f"the video is {len(source)} bytes, more than the limit of "
                f"{limits.max_media_bytes} bytes"
            )

    try:
        container = _open_container(source)
    except _AV_ERRORS + (ValueError,):
        raise MediaError("the data is not a video in a format we can read") from None
    try:
        if not container.streams.video:
            raise MediaError("the file has no video stream")
        stream = container.streams.video[0]
        width, height = stream.codec_context.width, stream.codec_context.height
        if width * height > limits.max_image_pixels:
            raise MediaError(
                f"the video frames are {width}x{height} pixels, more than the limit of "
                f"{limits.max_image_pixels} pixels"
            )
        if stream.time_base is None:
            raise MediaError("the video stream has no time base")
        time_base = float(stream.time_base)
        probe = _probe(container, stream)
    except BaseException:
        container.close()
        raise
    if not probe.times:
        container.close()
        raise MediaError("the video holds no frames")

    span = probe.end - probe.times[0]
    duration = span * time_base
    count = num_frames
    if fps is not None:
        count = max(1, min(limits.max_frames, num_frames, int(np.floor(duration * fps + 1e-9))))
    picks = _plan(probe, count)
    wanted = [probe.times[k] for k in picks]

    try:
        # The probed container is reused: one seek back instead of opening the file again.
        frames, actual, decoded, errors, overshot = _decode_picks(
            container, False, probe, wanted, allow_seek=True, careful=False
        )
        if overshot or len(actual) < len(wanted):
            # Frames missing: once more, carefully. A damaged file (decode errors) without frame
            # threads, which can drop the frames queued before an error; otherwise (a seek that
            # overshot or found nothing) forward from the start without seeking.
            frames, actual, more, _, _ = _decode_picks(
                _open_container(source),
                True,
                probe,
                wanted,
                allow_seek=bool(errors) and not overshot,
                careful=bool(errors),
            )
            decoded += more
    except MediaError:
        raise
    except _AV_ERRORS + (ValueError,) as exc:
        raise MediaError(f"the video cannot be decoded ({exc})") from None
    if frames is None or not actual:
        raise MediaError("no frame of the video could be decoded")

    kept = [w for w in wanted if w in actual]
    frames = frames[: len(kept)] if len(kept) == len(frames) else frames[: len(kept)].copy()
    start = probe.times[0]
    n_source = len(probe.times)
    return VideoFrames(
        frames=frames,
        timestamps=[(actual[w] - start) * time_base for w in kept],
        duration=duration,
        source_fps=(n_source / duration) if duration > 0 else 0.0,
        frame_indices=[bisect.bisect_left(probe.times, actual[w]) for w in kept],
        num_source_frames=n_source,
        decoded_frames=decoded,
    )


# --------------------------------------------------------------------------------------------
# Fetching
# --------------------------------------------------------------------------------------------


def _decode_data_url(url: str, limits: MediaLimits) -> bytes:
    """Bytes of a data: URL (base64 with or without padding / whitespace, or percent-encoded)."""
    header, sep, payload = url[5:].partition(",")
    if not sep:
        raise MediaError(f"the data URL {_shown(url)} has no ',' before its data")
    if len(payload) > limits.max_media_bytes * 4 // 3 + 16:
        raise MediaError(f"the data URL is larger than the limit of {limits.max_media_bytes} bytes")
    if header.lower().endswith(";base64"):
        compact = "".join(payload.split())
        if "%" in compact:
            compact = urllib.parse.unquote(compact)
        compact = compact.rstrip("=")
        altchars = b"-_" if ("-" in compact or "_" in compact) else None
        try:
            data = base64.b64decode(
                compact + "=" * (-len(compact) % 4), altchars=altchars, validate=True
            )
        except (binascii.Error, ValueError):
            raise MediaError(f"the data URL {_shown(url)} is not valid base64") from None
    else:
        data = urllib.parse.unquote_to_bytes(payload)
    if len(data) > limits.max_media_bytes:
        raise MediaError(f"the data URL is larger than the limit of {limits.max_media_bytes} bytes")
    return data


def _read_file_url(url: str, limits: MediaLimits) -> bytes:
    """Bytes of a file:// URL that lies below limits.allowed_media_dir (blocking I/O)."""
    if limits.allowed_media_dir is None:
        raise MediaError(f"file URLs are not allowed on this server: {_shown(url)}")
    parts = urllib.parse.urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise MediaError(f"file URL {_shown(url)} names a remote host")
    root = Path(os.path.realpath(limits.allowed_media_dir))
    path = Path(os.path.realpath(urllib.parse.unquote(parts.path)))
    if not path.is_relative_to(root):
        raise MediaError(f"file URL {_shown(url)} is outside the allowed media directory")
    if not path.is_file():
        raise MediaError(f"file URL {_shown(url)}: no such file")
    try:
        with open(path, "rb") as fh:
            data = fh.read(limits.max_media_bytes + 1)
    except OSError as exc:
        raise MediaError(f"file URL {_shown(url)} cannot be read ({exc.strerror})") from None
    if len(data) > limits.max_media_bytes:
        raise MediaError(
            f"file URL {_shown(url)} is larger than the limit of {limits.max_media_bytes} bytes"
        )
    return data


_IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _is_public(ip: _IPAddress) -> bool:
    """False for loopback, private, link-local, multicast, reserved, unspecified, shared, ..."""
    if isinstance(ip, ipaddress.IPv6Address):
        for embedded in (ip.ipv4_mapped, ip.sixtofour, ip.teredo[1] if ip.teredo else None):
            if embedded is not None and not _is_public(embedded):
                return False
    return ip.is_global and not (
        ip.is_multicast or ip.is_loopback or ip.is_link_local or ip.is_private
        or ip.is_reserved or ip.is_unspecified
    )


class _HostPolicy:
    """Which hosts may be fetched: public addresses, plus what the operator allowed."""

    def __init__(self, allowed: Sequence[str]):
        self.names: set[str] = set()
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for entry in allowed:
            entry = entry.strip()
            try:
                self.networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                self.names.add(entry.lower().rstrip("."))

    def allows(self, host: str, ip: _IPAddress) -> bool:
        if host.lower().rstrip(".") in self.names:
            return True
        if any(ip in net for net in self.networks):
            return True
        return _is_public(ip)


class MediaLoader:
    """Fetches and decodes media for the server.

    Fetching is async: data: URLs inline, http(s):// through httpx (SSRF-checked: the host is
    resolved and every address checked before any connection, the connection then goes to the
    checked address; redirects re-checked per hop, at most MAX_REDIRECTS; streamed with a byte
    limit and an overall timeout), file:// only below limits.allowed_media_dir. Decoding and
    sampling run in a ThreadPoolExecutor of `max_workers` threads owned by the loader.

    `http_client`, when given, is used as is (the caller closes it); it is asked never to follow
    redirects itself. Call `aclose()` on shutdown.

    `resize_to` (pixels, the model's input side, 384): images and sampled frames are resized to
    `resize_to` x `resize_to` in the worker thread, with exactly the model's preprocessing resize
    (Pillow bicubic, `model_adapter.preprocess.resize_image`), so the model sees the same pixel
    values while a 36-megapixel photo is held as 0.4 MB instead of 108 MB until it is encoded.
    """

    def __init__(
        self,
        limits: MediaLimits,
        *,
        max_workers: int = 2,
        http_client: httpx.AsyncClient | None = None,
        resize_to: int | None = None,
    ):
        self.limits = limits
        self.resize_to = resize_to
        self._policy = _HostPolicy(limits.allowed_remote_hosts)
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="media")
        self._owns_client = http_client is None
        self._client = http_client or httpx.AsyncClient(
            follow_redirects=False,
            trust_env=False,  # no proxy from the environment: we connect to the checked address
            timeout=httpx.Timeout(limits.fetch_timeout_seconds),
        )

    async def aclose(self) -> None:
        """Close the owned HTTP client and shut the worker threads down."""
        if self._owns_client:
            await self._client.aclose()
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _run(self, fn, *args, **kwargs):
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(*args, **kwargs))

    async def fetch(self, url: str) -> bytes:
        """The raw bytes behind a data:, http(s):// or file:// URL. Raises MediaError."""
        if not isinstance(url, str) or not url:
            raise MediaError("the media URL is empty")
        scheme = url.split(":", 1)[0].lower()
        if scheme == "data":
            if len(url) < 2**16:
                return _decode_data_url(url, self.limits)
            return await self._run(_decode_data_url, url, self.limits)  # keep the loop free
        if scheme == "file":
            return await self._run(_read_file_url, url, self.limits)
        if scheme in ("http", "https"):
            try:
                return await asyncio.wait_for(
                    self._fetch_http(url), timeout=self.limits.fetch_timeout_seconds
                )
            except (asyncio.TimeoutError, httpx.TimeoutException):
                raise MediaError(
                    f"fetching {_shown(url)} did not finish within "
                    f"{self.limits.fetch_timeout_seconds:g} s"
                ) from None
        raise MediaError(
            f"unsupported URL scheme in {_shown(url)}: use data:, http(s):// or file://"
        )

    async def load_image(self, url: str) -> Image.Image:
        """Fetch and decode one image: an 8-bit RGB Pillow image. Raises MediaError."""
        data = await self.fetch(url)
        try:
            return await self._run(self._decode_image, data)
        except MediaError as exc:
            raise MediaError(f"{_shown(url)}: {exc}") from None

    def _decode_image(self, data: bytes) -> Image.Image:
        image = decode_image(data, self.limits)
        if self.resize_to is None:
            return image
        return Image.fromarray(resize_image(image, self.resize_to))

    def _sample_video(self, data: bytes, num_frames: int, fps: float | None) -> VideoFrames:
        video = sample_video(data, num_frames=num_frames, fps=fps, limits=self.limits)
        if self.resize_to is not None and len(video.frames):
            size = self.resize_to
            out = np.empty((len(video.frames), size, size, 3), dtype=np.uint8)
            for i, frame in enumerate(video.frames):
                out[i] = resize_image(Image.fromarray(frame), size)
            video.frames = out
        return video

    async def load_video(
        self, url: str, *, num_frames: int = 16, fps: float | None = None
    ) -> VideoFrames:
        """Fetch one video and sample its frames (see `sample_video`). Raises MediaError."""
        _check_sampling(num_frames, fps, self.limits)  # before fetching anything
        data = await self.fetch(url)
        try:
            return await self._run(self._sample_video, data, num_frames, fps)
        except MediaError as exc:
            raise MediaError(f"{_shown(url)}: {exc}") from None

    async def _checked_address(self, url: httpx.URL) -> str:
        """Resolve the URL's host; return an address to connect to, or raise if refused."""
        host = url.host
        if not host:
            raise MediaError(f"the URL {_shown(str(url))} has no host")
        try:
            ips = [ipaddress.ip_address(host)]
        except ValueError:
            loop = asyncio.get_running_loop()
            try:
                infos = await loop.getaddrinfo(
                    host, url.port or (443 if url.scheme == "https" else 80),
                    type=socket.SOCK_STREAM,
                )
            except (socket.gaierror, UnicodeError, OSError):
                raise MediaError(f"the host of {_shown(str(url))} cannot be resolved") from None
            ips = [ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos]
        if not ips:
            raise MediaError(f"the host of {_shown(str(url))} cannot be resolved")
        refused = [ip for ip in ips if not self._policy.allows(host, ip)]
        if refused:
            raise MediaError(
                f"fetching {_shown(str(url))} is not allowed: {refused[0]} is a loopback, private, "
                "link-local or otherwise non-public address"
            )
        return str(ips[0])

    async def _fetch_http(self, url: str) -> bytes:
        limit = self.limits.max_media_bytes
        try:
            current = httpx.URL(url)
        except (httpx.InvalidURL, ValueError):
            raise MediaError(f"the URL {_shown(url)} is not valid") from None
        for _hop in range(MAX_REDIRECTS + 1):
            if current.scheme not in ("http", "https"):
                raise MediaError(f"a redirect to {_shown(str(current))} is not allowed")
            address = await self._checked_address(current)
            headers = {
                "Host": current.netloc.decode("ascii"),
                "Accept-Encoding": "identity",
                "User-Agent": _USER_AGENT,
            }
            extensions = {"sni_hostname": current.host} if current.scheme == "https" else {}
            request = self._client.build_request(
                "GET",
                current.copy_with(host=address),
                headers=headers,
                extensions=extensions,
                timeout=httpx.Timeout(self.limits.fetch_timeout_seconds),
            )
            shown = _shown(str(current))
            try:
                response = await self._client.send(request, stream=True, follow_redirects=False)
            except httpx.TimeoutException:
                raise
            except httpx.HTTPError as exc:
                raise MediaError(
                    f"fetching {shown} failed: {type(exc).__name__} {exc}".rstrip()
                ) from None
            try:
                if response.is_redirect:
                    location = response.headers.get("location")
                    if not location:
                        raise MediaError(f"{shown} redirects without a location")
                    current = current.join(location)
                    continue
                if response.status_code != 200:
                    raise MediaError(
                        f"fetching {shown} failed: HTTP {response.status_code} "
                        f"{response.reason_phrase}".rstrip()
                    )
                declared = response.headers.get("content-length")
                if declared and declared.isdigit() and int(declared) > limit:
                    raise MediaError(f"{shown} is {declared} bytes, more than the limit of {limit}")
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > limit:
                        raise MediaError(f"{shown} is larger than the limit of {limit} bytes")
                    chunks.append(chunk)
                return b"".join(chunks)
            except httpx.TimeoutException:
                raise
            except httpx.HTTPError as exc:
                raise MediaError(f"fetching {shown} failed: {type(exc).__name__} {exc}") from None
            finally:
                await response.aclose()
        raise MediaError(f"{_shown(url)} redirects more than {MAX_REDIRECTS} times")
