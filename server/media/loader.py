"""The async media loader the server uses: fetch (event loop), decode and sample (worker threads),
with a content-addressed cache of what it decoded (`server.media.cache`)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol, TypeVar

import av
import httpx
import numpy as np
from PIL import Image

from model_adapter.preprocess import resize_image
from server.media.base import MediaError, MediaLimits, shown_url
from server.media.cache import MediaCache, content_digest, content_key, frame_key
from server.media.fetch import Fetcher
from server.media.gop import PickDecoder, SharedFrames
from server.media.image import ImageDecoder
from server.media.threaded import close_all, decode_gop_range, gop_runs, merge_gop_runs, open_spare
from server.media.video import (
    VideoFrames,
    VideoPlan,
    check_sampling,
    open_and_plan_video,
    sample_planned_video,
    sample_video,
)

__all__ = ["MediaLoader", "MediaLoaderProtocol"]

_T = TypeVar("_T")

_HASH_INLINE_BYTES = 1 << 20
"""Media up to this size are hashed on the event loop (blake3: well under a millisecond); larger
ones in a worker thread."""


class MediaLoaderProtocol(Protocol):
    """What the server needs from a media loader (`MediaLoader`, or a test's fake).

    Both loads raise a `ValueError` (`MediaError`) with a user-facing message for bad media.
    """

    async def load_image(self, url: str) -> Image.Image:
        """One image as 8-bit RGB."""
        ...

    async def load_video(self, url: str, *, num_frames: int = 16, fps: float | None = None) -> VideoFrames:
        """Frames sampled from one video; `.frames` is (T, H, W, 3) uint8 RGB."""
        ...

    async def aclose(self) -> None:
        """Release clients and threads (on shutdown)."""
        ...


class MediaLoader:
    """Fetches and decodes media for the server (implements `MediaLoaderProtocol`).

    Fetching is async (`server.media.fetch.Fetcher`: data: inline, http(s):// SSRF-checked,
    file:// below `limits.allowed_media_dir`). Decoding and sampling run in a ThreadPoolExecutor
    of `max_workers` threads owned by the loader, so the event loop stays free.

    `http_client`, when given, is used as is (the caller closes it). Call `aclose()` on shutdown.

    `resize_to` (pixels, the model's input side, 384; None keeps the decoded size): images and
    sampled frames are resized to `resize_to` x `resize_to` in the worker thread, with exactly
    the model's preprocessing resize (Pillow bicubic, `model_adapter.preprocess.resize_image`),
    so the model sees the same pixel values while a 36-megapixel photo is held as 0.4 MB instead
    of 108 MB until it is encoded. Fixed at construction, like the limits.

    `cache` (a `MediaCache`; None or capacity 0: no cache): decoded images and sampled videos are
    kept under `content_key` = a hash of the fetched bytes + what changes the result (kind,
    `resize_to`, and for videos num_frames, fps, limits.max_frames), so a repeated item is fetched
    and hashed but decoded once, and concurrent requests for one new item decode it once.
    `load_image_with_key` and `VideoFrames.frame_keys` hand the keys on (to vLLM as
    `multi_modal_uuids`). Cached values are shared: video frame arrays are read-only.

    A video whose picks lie in several GOPs is decoded as up to `max_workers` sets of whole GOPs,
    each a task on the worker pool with its own demuxer over the same bytes, beside the request's
    other images and videos; the frames are exactly those of `sample_video`.
    """

    def __init__(
        self,
        limits: MediaLimits,
        *,
        max_workers: int = 2,
        http_client: httpx.AsyncClient | None = None,
        resize_to: int | None = None,
        cache: MediaCache | None = None,
    ):
        self.limits = limits
        self.resize_to = resize_to
        self.cache = cache if cache is not None else MediaCache(0)
        self._workers = max_workers
        self._images = ImageDecoder(limits)
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="media")
        self._fetcher = Fetcher(limits, executor=self._executor, http_client=http_client)

    async def aclose(self) -> None:
        """Close the owned HTTP client and shut the worker threads down."""
        await self._fetcher.aclose()
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _run(self, fn: Callable[..., _T], *args) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def fetch(self, url: str) -> bytes:
        """The raw bytes behind a data:, http(s):// or file:// URL. Raises MediaError."""
        return await self._fetcher.fetch(url)

    async def _key(self, kind: str, data: bytes, **params: object) -> str:
        digest = (
            content_digest(data) if len(data) <= _HASH_INLINE_BYTES else await self._run(content_digest, data)
        )
        return content_key(kind, digest, size=self.resize_to, **params)

    async def load_image(self, url: str) -> Image.Image:
        """Fetch and decode one image: an 8-bit RGB Pillow image. Raises MediaError."""
        return (await self.load_image_with_key(url))[0]

    async def load_image_with_key(self, url: str) -> tuple[Image.Image, str]:
        """Fetch and decode one image (cached by content): the image and its content key.
        The image may be shared with other requests: do not modify it. Raises MediaError."""
        data = await self.fetch(url)
        key = await self._key("image", data)
        try:
            image = await self.cache.get_or_load(
                key, "image", lambda: self._run(self._decode_image, data), _image_nbytes
            )
        except MediaError as exc:
            raise MediaError(f"{shown_url(url)}: {exc}") from None
        return image, key

    async def load_video(self, url: str, *, num_frames: int = 16, fps: float | None = None) -> VideoFrames:
        """Fetch one video and sample its frames (see `sample_video`; cached by content), with one
        key per frame in `frame_keys`. The frames array is shared and read-only. Raises MediaError."""
        check_sampling(num_frames, fps, self.limits)  # before fetching anything
        data = await self.fetch(url)
        key = await self._key(
            "video",
            data,
            num_frames=num_frames,
            fps=None if fps is None else float(fps),
            max_frames=self.limits.max_frames,
        )
        try:
            video = await self.cache.get_or_load(
                key, "video", lambda: self._sample_video_async(data, num_frames, fps), _video_nbytes
            )
        except MediaError as exc:
            raise MediaError(f"{shown_url(url)}: {exc}") from None
        return dataclasses.replace(video, frame_keys=[frame_key(key, i) for i in range(len(video.frames))])

    async def _sample_video_async(self, data: bytes, num_frames: int, fps: float | None) -> VideoFrames:
        """`_sample_video` with sets of the GOPs that hold picks decoded as separate pool tasks
        (resized in the same task); the sequential sampler whenever that cannot give its exact
        frames. The further containers are opened while the first is probed, and the probed one
        decodes the first set (as `sample_video_threaded`)."""
        video = None
        if self._workers > 1:
            planned = asyncio.ensure_future(
                self._run(
                    lambda: open_and_plan_video(data, num_frames=num_frames, fps=fps, limits=self.limits)
                )
            )
            spares = await asyncio.gather(*(self._run(open_spare, data) for _ in range(self._workers - 1)))
            opened = [c for c in spares if c is not None]
            try:
                plan, probed = await planned
            except BaseException:
                close_all(opened)
                raise
            sets, thread_type = gop_runs(plan, probed, opened)
            if len(sets) <= 1:
                video = await self._run(self._sample_planned, plan, probed)
            else:
                shared = SharedFrames(plan.wanted) if self.resize_to is None else None
                runs = await asyncio.gather(
                    *(
                        self._run(self._decode_range, plan, picks, thread_type, c, fresh, shared)
                        for picks, c, fresh in sets
                    )
                )
                complete = [r for r in runs if r is not None]
                if len(complete) == len(runs):
                    video = merge_gop_runs(plan, complete, shared)  # None: a run was incomplete
        if video is None:
            video = await self._run(self._sample_video, data, num_frames, fps)
        video.frames.flags.writeable = False  # shared through the cache
        return video

    def _decode_range(
        self,
        plan: VideoPlan,
        picks: list[int],
        thread_type: str,
        container: av.container.InputContainer,
        fresh: bool,
        shared: SharedFrames | None,
    ) -> PickDecoder | None:
        """The picks of one GOP set decoded (from `container`, which it closes) and resized (a
        worker task); None when decoding raised (the sequential sampler then reports or recovers)."""
        try:
            run = decode_gop_range(plan, picks, thread_type, container=container, fresh=fresh, shared=shared)
        except Exception:  # noqa: BLE001 - any decoder failure: the sequential path decides
            return None
        if self.resize_to is not None and run.frames is not None:
            run.frames = self._resized(run.frames[: len(run.actual)])
        return run

    def _decode_image(self, data: bytes) -> Image.Image:
        image = self._images.decode(data)
        if self.resize_to is None:
            return image
        return Image.fromarray(resize_image(image, self.resize_to))

    def _sample_video(self, data: bytes, num_frames: int, fps: float | None) -> VideoFrames:
        """`sample_video`, resized (a worker task)."""
        return self._resized_video(sample_video(data, num_frames=num_frames, fps=fps, limits=self.limits))

    def _sample_planned(self, plan: VideoPlan, container: av.container.InputContainer) -> VideoFrames:
        """`sample_planned_video` (from the probed container), resized (a worker task)."""
        return self._resized_video(sample_planned_video(plan, container))

    def _resized_video(self, video: VideoFrames) -> VideoFrames:
        if self.resize_to is not None and len(video.frames):
            video.frames = self._resized(video.frames)
        return video

    def _resized(self, frames: np.ndarray) -> np.ndarray:
        """(T, H, W, 3) uint8 -> (T, resize_to, resize_to, 3), the model's own resize per frame."""
        size = self.resize_to
        assert size is not None  # callers resize only when resize_to is set
        out = np.empty((len(frames), size, size, 3), dtype=np.uint8)
        for i, frame in enumerate(frames):
            out[i] = resize_image(Image.fromarray(frame), size)
        return out


def _image_nbytes(image: Image.Image) -> int:
    """Pixel bytes of a decoded image (8-bit bands)."""
    return image.width * image.height * len(image.getbands())


def _video_nbytes(video: VideoFrames) -> int:
    """Pixel bytes of the sampled frames (+ 8 per timestamp and frame index)."""
    return int(video.frames.nbytes) + 16 * len(video.timestamps)
