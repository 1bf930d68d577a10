"""GOP-aware decoding of picked video frames (PyAV): the checked stream, the demux probe, the pick decoder.

`video_stream(container, max_pixels)` is the first video stream, checked (a decodable codec, a frame
size, a time base), so a malformed container is a MediaError before anything reads it;
`probe_stream(container, stream)` demuxes every packet once without decoding (real frame times, key
frames, end); `PickDecoder` then decodes just the frames the sampler picked, forward within a GOP
and seeking across GOPs. Used by `server.media.video.sample_video`.
"""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass

import av
import numpy as np

from server.media.base import MediaError

AV_ERRORS = (av.FFmpegError, OSError, EOFError)
"""What PyAV raises for damaged or unreadable data."""


def video_stream(container: av.container.InputContainer, max_pixels: int) -> tuple[av.VideoStream, float]:
    """The first video stream of `container` and its time base (seconds per pts tick), checked.

    A damaged header can leave PyAV with a stream that has no codec context (an unknown or
    corrupt codec id or codec parameters), a frame size of 0 or a time base of 0: each is a
    MediaError naming what is wrong, not an AttributeError or a division by zero later.

    Raises MediaError: no video stream, no decoder for it, more than `max_pixels` per frame
        (width x height from the header), no usable time base.
    """
    try:
        streams = container.streams.video
        stream = streams[0] if streams else None
        codec = stream.codec_context if stream is not None else None
        time_base = stream.time_base if stream is not None else None
    except (ArithmeticError, ValueError, *AV_ERRORS):  # e.g. a time base with denominator 0
        raise MediaError("the video stream's header is damaged") from None
    if stream is None:
        raise MediaError("the file has no video stream")
    if codec is None:
        raise MediaError("the video stream's codec is unknown or its parameters are damaged")
    width, height = codec.width, codec.height
    if width * height > max_pixels:
        raise MediaError(
            f"the video frames are {width}x{height} pixels, more than the limit of {max_pixels} pixels"
        )
    if time_base is None or time_base <= 0:
        raise MediaError("the video stream has no time base")
    return stream, float(time_base)


@dataclass
class Probe:
    """What demuxing a stream (without decoding) tells: its real frame times and key frames."""

    times: list[int]  # presentation timestamps of all frames, sorted (stream time_base)
    keyframes: list[int]  # pts of the key frames, sorted
    keyframe_dts: dict[int, int]  # key frame pts -> its dts (some demuxers seek by dts)
    end: int  # end of the last frame (stream time_base)


def probe_stream(container: av.container.InputContainer, stream: av.VideoStream) -> Probe:
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
    except AV_ERRORS:
        pass  # a truncated or damaged file: keep what was read
    times = sorted(set(times))  # a broken file may repeat a timestamp
    keyframes = sorted(set(keyframes))
    if times:
        last_step = 0
        if len(times) > 1:
            last_step = int(np.median(np.diff(times[-min(len(times), 32) :])))
        end = max(end if end is not None else times[-1], times[-1] + last_step)
    return Probe(times, keyframes, keyframe_dts, end or 0)


def _rotate(frame: np.ndarray, degrees: int) -> np.ndarray:
    """Apply a display rotation given counter-clockwise in degrees (multiples of 90)."""
    k = int(round(degrees / 90.0)) % 4
    return np.ascontiguousarray(np.rot90(frame, k)) if k else frame


class SharedFrames:
    """One (len(wanted), H, W, 3) uint8 array that several `PickDecoder`s fill from their own
    threads, each frame in the row of its pts in `wanted` (all picks of the video, sorted), so that
    parallel runs need no merge copy (for 16 frames of 720p video that copy is 44 MB, and its first
    touch of fresh memory alone took 80-107 ms on a 2-core VM).

    The array is allocated by the first frame put (its H, W); a frame of another size is refused
    (`put` returns False), as a decoder refuses a size change mid-stream.
    """

    def __init__(self, wanted: list[int]):
        self._rows = {pts: i for i, pts in enumerate(wanted)}
        self.array: np.ndarray | None = None
        self._lock = threading.Lock()

    def put(self, pts: int, rgb: np.ndarray) -> bool:
        """Write the (H, W, 3) frame `rgb` into the row of the wanted `pts`; False when its size
        differs from the first frame's."""
        if self.array is None:
            with self._lock:
                if self.array is None:
                    self.array = np.empty((len(self._rows), *rgb.shape), dtype=np.uint8)
        if rgb.shape != self.array.shape[1:]:
            return False
        self.array[self._rows[pts]] = rgb
        return True


class PickDecoder:
    """Decodes the frames whose pts are in `wanted` (sorted) from one container, GOP-aware.

    Decodes forward within a GOP and seeks (to the key frame at or before the next wanted pts) only
    when that key frame lies after the last decoded frame. A wanted frame that does not decode
    (damaged or missing data) is replaced by the nearest frame that did decode between the previous
    pick and the next wanted pts (earlier one first), or dropped.

    careful: slice threads only (frame threads can take the frames queued before a decode error
    along) and every frame decoded; the caller uses it for a second pass on damaged files. The fast
    pass tells the decoder to skip non-reference frames (most B-frames) whose packet pts is not
    wanted: nothing refers to them, so the wanted frames decode exactly as in a full decode.
    thread_type: FFmpeg's decoder threading for the fast pass ("AUTO" = frame + slice threads).

    After `run`: `frames` is (len(wanted), H, W, 3) uint8 (None if nothing decoded), its first
    len(actual) rows the frames of the wanted pts in `actual` (wanted pts -> pts taken), in order
    (frames are converted straight into it: no second copy). With `shared`, the frames go to its
    rows instead (`SharedFrames.put`) and `frames` stays None; `decoded` counts frames decoded,
    `errors` packets that failed; `overshot` is True when a seek landed after its target (the
    caller then retries without seeking).
    """

    def __init__(
        self,
        probe: Probe,
        wanted: list[int],
        *,
        allow_seek: bool,
        careful: bool,
        thread_type: str = "AUTO",
        shared: SharedFrames | None = None,
    ):
        self.shared = shared
        self.probe = probe
        self.wanted = wanted
        self.allow_seek = allow_seek
        self.careful = careful
        self.thread_type = "SLICE" if careful else thread_type
        self.frames: np.ndarray | None = None
        self.actual: dict[int, int] = {}
        self.decoded = 0
        self.errors = 0
        self.overshot = False
        self._wanted_set = set(wanted)
        self._i = 0  # index of the wanted frame looked for
        self._taken = -(2**63)  # pts of the last frame taken
        self._prev: tuple[int, av.VideoFrame] | None = None  # last decoded after _taken, not taken
        self._by_dts = False  # seek by the key frame's dts once a seek by pts overshot
        self._skipping = False  # the decoder is told to skip non-reference frames

    def run(self, container: av.container.InputContainer, *, fresh: bool) -> PickDecoder:
        """Decode from `container`, then close it. `fresh`: it was just opened (it stands at the
        start); else the first step seeks."""
        try:
            stream = container.streams.video[0]
            stream.thread_type = self.thread_type
            first = True
            while self._i < len(self.wanted):
                landed = self._seek(container, stream, first=first, fresh=fresh)
                first = False
                step = "overshot" if landed is None else self._forward(container, stream, landed)
                if step == "overshot":
                    self.overshot = True
                if step != "again":
                    break
        finally:
            container.close()
        return self

    def _seek(self, container, stream, *, first: bool, fresh: bool) -> bool | None:
        """Seek to the key frame before the wanted frame when that saves decoding.

        Returns True after a seek (the caller checks where it landed), False without one, None
        when the seek a reused container needs failed.
        """
        probe = self.probe
        kf_pos = bisect.bisect_right(probe.keyframes, self.wanted[self._i]) - 1
        keyframe = probe.keyframes[kf_pos] if kf_pos >= 0 else None
        must_seek = first and not fresh  # a fresh container stands at the start
        if not must_seek and not (
            self.allow_seek and keyframe is not None and (not first or keyframe > probe.keyframes[0])
        ):
            return False
        try:
            if keyframe is None or keyframe <= probe.keyframes[0]:
                # The first GOP: seek to the start itself (some demuxers index by dts and miss a
                # first key frame whose pts is later than its dts).
                to = min(0, probe.times[0], keyframe if keyframe is not None else 0)
            else:
                to = probe.keyframe_dts.get(keyframe, keyframe) if self._by_dts else keyframe
            container.seek(to, stream=stream, backward=True, any_frame=False)
            return True
        except AV_ERRORS:
            if must_seek:
                return None
            self.allow_seek = False
            return False

    def _forward(self, container, stream, check_landing: bool) -> str:
        """Demux and decode forward, taking wanted frames as they come.

        Returns "done" (all taken, or the end of the stream), "again" (seek for the next wanted
        frame), "overshot" (a seek landed after its target even by dts) or "damaged" (a packet
        failed to decode in the fast pass: the caller decodes again carefully).
        """
        wanted = self.wanted
        target = wanted[self._i]
        codec = stream.codec_context
        for packet in container.demux(stream):
            if not self.careful:
                skip = packet.pts is not None and packet.pts not in self._wanted_set
                if skip != self._skipping:
                    codec.skip_frame = "NONREF" if skip else "DEFAULT"
                    self._skipping = skip
            try:
                frames = packet.decode()
            except AV_ERRORS:
                self.errors += 1
                if not self.careful:
                    # Damaged data: stop here, the caller decodes again carefully. A frame-threaded
                    # decoder must not be used on after an error: FFmpeg's VP9 decoder crashes
                    # (a null call in a frame thread) when one that hit errors is flushed by a seek
                    # and fed again.
                    return "damaged"
                continue  # a damaged packet: skip it, the decoder resynchronises
            for frame in frames:
                self.decoded += 1
                pts = frame.pts if frame.pts is not None else frame.dts
                if pts is None or pts <= self._taken:
                    continue
                if check_landing:
                    check_landing = False
                    if pts > target:  # landed after the target: the same target, by dts
                        return self._overshot()
                if pts < wanted[self._i]:
                    self._prev = (pts, frame)
                    continue
                # Wanted frames that never came out before this one: an earlier stand-in or none.
                while self._i + 1 < len(wanted) and pts >= wanted[self._i + 1]:
                    if self._prev is not None:
                        self._take(*self._prev)
                        self._prev = None
                    self._i += 1
                if not self._take(pts, frame):
                    continue
                self._prev = None
                self._i += 1
                if self._i >= len(wanted):
                    return "done"
                nxt = bisect.bisect_right(self.probe.keyframes, wanted[self._i]) - 1
                if self.allow_seek and nxt >= 0 and self.probe.keyframes[nxt] > pts:
                    return "again"
        # End of stream (demux's last, empty packet flushed the decoder).
        if check_landing:  # a seek that led to no frame at all
            return self._overshot()
        if self._prev is not None:
            self._take(*self._prev)
        return "done"

    def _overshot(self) -> str:
        if self._by_dts:
            return "overshot"
        self._by_dts = True
        return "again"

    def _take(self, pts: int, frame: av.VideoFrame) -> bool:
        """Convert `frame` (pts `pts`) into the buffer as the current wanted frame."""
        try:
            rgb = _rotate(frame.to_ndarray(format="rgb24"), frame.rotation or 0)
        except AV_ERRORS + (ValueError,):
            return False
        if self.shared is not None:
            if not self.shared.put(self.wanted[self._i], rgb):
                return False  # not the size of the other runs' frames
        else:
            if self.frames is None:
                self.frames = np.empty((len(self.wanted), *rgb.shape), dtype=np.uint8)
            elif rgb.shape != self.frames.shape[1:]:
                return False  # the size changed mid-stream: keep the first size
            self.frames[len(self.actual)] = rgb
        self.actual[self.wanted[self._i]] = pts
        self._taken = pts
        return True
