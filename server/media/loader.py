"""The async media loader the server uses: fetch (event loop), decode and sample (worker threads)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol, TypeVar

import httpx
import numpy as np
from PIL import Image

from model_adapter.preprocess import resize_image
from server.media.base import MediaError, MediaLimits, shown_url
from server.media.fetch import Fetcher
from server.media.image import ImageDecoder
from server.media.video import VideoFrames, check_sampling, sample_video

__all__ = ["MediaLoader", "MediaLoaderProtocol"]

_T = TypeVar("_T")


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

    async def load_image(self, url: str) -> Image.Image:
        """Fetch and decode one image: an 8-bit RGB Pillow image. Raises MediaError."""
        data = await self.fetch(url)
        try:
            return await self._run(self._decode_image, data)
        except MediaError as exc:
            raise MediaError(f"{shown_url(url)}: {exc}") from None

    async def load_video(
        self, url: str, *, num_frames: int = 16, fps: float | None = None
    ) -> VideoFrames:
        """Fetch one video and sample its frames (see `sample_video`). Raises MediaError."""
        check_sampling(num_frames, fps, self.limits)  # before fetching anything
        data = await self.fetch(url)
        try:
            return await self._run(self._sample_video, data, num_frames, fps)
        except MediaError as exc:
            raise MediaError(f"{shown_url(url)}: {exc}") from None

    def _decode_image(self, data: bytes) -> Image.Image:
        image = self._images.decode(data)
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
