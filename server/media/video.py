"""Video sampling: frames spread uniformly over a clip's real duration, decoded GOP-aware (PyAV).

`sample_video(bytes | path, num_frames=, fps=, limits=)` -> `VideoFrames`. The packets are demuxed
once without decoding (`gop.probe_stream`: real frame times, key frames, end); `_plan` picks the frames;
`gop.PickDecoder` decodes just those. Failures a user caused raise `MediaError` (HTTP 400).

`plan_video` (the checks, probe and picks without decoding), `open_and_plan_video` (the same, the
probed container kept open), `sample_planned_video`, `open_video` and `VideoPlan` are what the
threaded sampler (`server.media.threaded`) builds on.
"""

from __future__ import annotations

import bisect
import io
import logging
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

from server.media.base import MediaError, MediaLimits, check_size
from server.media.gop import AV_ERRORS, PickDecoder, Probe, probe_stream, video_stream

logger = logging.getLogger(__name__)

__all__ = [
    "VideoFrames",
    "VideoPlan",
    "check_sampling",
    "open_and_plan_video",
    "open_video",
    "plan_video",
    "sample_planned_video",
    "sample_video",
]

# Demuxers FFmpeg may pick for user bytes. A whitelist keeps playlist / concat demuxers (which
# open further URLs or files by themselves), text "video" demuxers (tty) and image sequences out.
_VIDEO_FORMATS = (
    "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,avi,flv,mpegts,mpeg,ogg,asf,gif,h264,hevc,m4v,mjpeg,ivf,nut,obu"
)


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
    frame_keys: None, or T content keys (one per frame, `server.media.cache.frame_key`) set by
        the loader: what the engine gets as the frames' `multi_modal_uuids`.
    """

    frames: np.ndarray
    timestamps: list[float]
    duration: float
    source_fps: float = 0.0
    frame_indices: list[int] = field(default_factory=list)
    num_source_frames: int = 0
    decoded_frames: int = 0
    frame_keys: list[str] | None = None


@dataclass
class VideoPlan:
    """A probed video and the frames picked from it: what the pick decoders need.

    source: the bytes or path. probe: its demuxed frame times and key frames. wanted: the pts of
    the picked frames, sorted (stream time base). time_base: seconds per pts tick. duration:
    seconds from the first frame to the end of the last.
    """

    source: bytes | str | Path
    probe: Probe
    wanted: list[int]
    time_base: float
    duration: float


def open_video(source: bytes | str | Path) -> av.container.InputContainer:
    """A PyAV input container over video bytes (no protocols) or a local path (files only), the
    demuxers limited to the video formats we read. Raises what PyAV raises (`AV_ERRORS`,
    ValueError) for data FFmpeg cannot open; `open_and_plan_video` turns that into a MediaError."""
    options = {"format_whitelist": _VIDEO_FORMATS}
    if isinstance(source, (bytes, bytearray, memoryview)):
        # Nested opens (playlists, references) get no protocol at all.
        options["protocol_whitelist"] = "none"
        return av.open(io.BytesIO(bytes(source)), mode="r", options=options)
    options["protocol_whitelist"] = "file"
    return av.open(str(source), mode="r", options=options)


def _plan(probe: Probe, count: int) -> list[int]:
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
        max(0, bisect.bisect_right(probe.times, start + (i + 0.5) * span / count) - 1) for i in range(count)
    ]
    picks: list[int] = []
    for i, k in enumerate(shown):
        # strictly increasing, and leave room for the picks still to come
        k = max(k, picks[-1] + 1) if picks else k
        picks.append(min(k, n - count + i))
    for i in range(count - 2, -1, -1):  # a pick pushed back by the room rule keeps order
        picks[i] = min(picks[i], picks[i + 1] - 1)
    return picks


def check_sampling(num_frames: int, fps: float | None, limits: MediaLimits) -> None:
    """Raise MediaError unless 1 <= num_frames <= limits.max_frames and fps is None or > 0."""
    if isinstance(num_frames, bool) or not isinstance(num_frames, int):
        raise MediaError("num_frames must be an integer")
    if num_frames <= 0 or num_frames > limits.max_frames:
        raise MediaError(f"num_frames must be between 1 and {limits.max_frames}, got {num_frames}")
    if fps is not None and (
        isinstance(fps, bool) or not isinstance(fps, (int, float)) or not np.isfinite(fps) or fps <= 0
    ):
        raise MediaError(f"fps must be a positive number, got {fps}")


def open_and_plan_video(
    source: bytes | str | Path,
    *,
    num_frames: int = 16,
    fps: float | None = None,
    limits: MediaLimits = MediaLimits(),
) -> tuple[VideoPlan, av.container.InputContainer]:
    """`plan_video`, with the probed container kept open (demuxed to its end) for the caller, who
    decodes from it (`sample_planned_video`, or `PickDecoder.run(container, fresh=False)`) or closes
    it. Raises MediaError as `plan_video`."""
    check_sampling(num_frames, fps, limits)
    if isinstance(source, (bytes, bytearray, memoryview)):
        check_size(source, "video", limits)
    try:
        container = open_video(source)
    except AV_ERRORS + (ValueError,) as exc:
        # the client gets the plain message; the log keeps what FFmpeg / PyAV said
        logger.info(
            "video open failed (%d bytes): %r",
            len(source) if isinstance(source, (bytes, bytearray, memoryview)) else -1,
            exc,
        )
        raise MediaError("the data is not a video in a format we can read") from None
    try:
        stream, time_base = video_stream(container, limits.max_image_pixels)
        probe = probe_stream(container, stream)
    except BaseException:
        container.close()
        raise
    if not probe.times:
        container.close()
        raise MediaError("the video holds no frames")

    duration = (probe.end - probe.times[0]) * time_base
    count = num_frames
    if fps is not None:
        count = max(1, min(limits.max_frames, num_frames, int(np.floor(duration * fps + 1e-9))))
    wanted = [probe.times[k] for k in _plan(probe, count)]

    return VideoPlan(source, probe, wanted, time_base, duration), container


def plan_video(
    source: bytes | str | Path,
    *,
    num_frames: int = 16,
    fps: float | None = None,
    limits: MediaLimits = MediaLimits(),
) -> VideoPlan:
    """The frames `sample_video` would pick (checks, demux probe, picks; nothing decoded).

    Raises MediaError: bad num_frames / fps, not a video, too many pixels per frame, no frames.
    """
    plan, container = open_and_plan_video(source, num_frames=num_frames, fps=fps, limits=limits)
    container.close()
    return plan


def _frames_of(
    plan: VideoPlan, frames: np.ndarray | None, actual: dict[int, int], decoded: int
) -> VideoFrames:
    """`VideoFrames` of the decoded `frames` (rows = the wanted pts found in `actual`, in order).
    Raises MediaError when nothing decoded."""
    if frames is None or not actual:
        raise MediaError("no frame of the video could be decoded")
    probe, time_base = plan.probe, plan.time_base
    kept = [w for w in plan.wanted if w in actual]
    frames = frames[: len(kept)] if len(kept) == len(frames) else frames[: len(kept)].copy()
    start = probe.times[0]
    n_source = len(probe.times)
    return VideoFrames(
        frames=frames,
        timestamps=[(actual[w] - start) * time_base for w in kept],
        duration=plan.duration,
        source_fps=(n_source / plan.duration) if plan.duration > 0 else 0.0,
        frame_indices=[bisect.bisect_left(probe.times, actual[w]) for w in kept],
        num_source_frames=n_source,
        decoded_frames=decoded,
    )


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
    shown at each segment's centre is taken; with `fps`, the count is floor(duration * fps), at
    least 1 and at most `num_frames` and `limits.max_frames` (num_frames caps fps, as in vLLM),
    still spread over the whole duration. A clip with fewer frames than segments gives each of its
    frames once. Damaged packets are skipped. Frames get their display rotation (multiples of 90
    degrees) applied.

    Returns VideoFrames (frames (T, H, W, 3) uint8 RGB, timestamps in seconds).
    Raises MediaError: bad num_frames / fps, not a video, too many pixels per frame, no frame decodes.
    """
    return sample_planned_video(*open_and_plan_video(source, num_frames=num_frames, fps=fps, limits=limits))


def sample_planned_video(plan: VideoPlan, container: av.container.InputContainer) -> VideoFrames:
    """`sample_video` from `open_and_plan_video`'s plan and probed container (which it closes).

    Raises MediaError: no frame decodes.
    """
    source, wanted = plan.source, plan.wanted
    try:
        # The probed container is reused: one seek back instead of opening the file again.
        run = PickDecoder(plan.probe, wanted, allow_seek=True, careful=False).run(container, fresh=False)
        decoded = run.decoded
        if run.overshot or len(run.actual) < len(wanted):
            # Frames missing: once more, carefully. A damaged file (decode errors) without frame
            # threads, which can drop the frames queued before an error; otherwise (a seek that
            # overshot or found nothing) forward from the start without seeking.
            damaged = bool(run.errors)
            run = PickDecoder(
                plan.probe, wanted, allow_seek=damaged and not run.overshot, careful=damaged
            ).run(open_video(source), fresh=True)
            decoded += run.decoded
    except MediaError:
        raise
    except AV_ERRORS + (ValueError,) as exc:
        raise MediaError(f"the video cannot be decoded ({exc})") from None
    if run.frames is None or not run.actual:
        raise MediaError("no frame of the video could be decoded")

    return _frames_of(plan, run.frames, run.actual, decoded)
