"""A content-addressed, byte-bounded LRU cache of decoded media, with single-flight loads.

A chat UI resends the whole conversation on every turn, every image and video included. The
server keys what it decoded (resized images, sampled and resized video frames) by a hash of the
media BYTES plus every parameter that changes the result (`content_key`), so a repeated item is
fetched (its bytes must be hashed: a URL is not a content key) but never decoded again, whether it
came as a data: URL, a file or an http(s) URL. The same key goes to vLLM as the item's
`multi_modal_uuids` entry (`frame_key` for one frame of a video), so the engine's processor,
encoder and prefix caches recognise the item without hashing its pixels.

`MediaCache.get_or_load(key, kind, load, nbytes)`:
- a hit returns the cached value (LRU order refreshed);
- a miss runs `load()` once: concurrent callers for the same key while it runs wait for that one
  load (single-flight) and count as hits; a failed load is not cached (every waiter gets the error);
  a caller that is cancelled does not cancel the load the others wait for;
- values are accounted by `nbytes(value)` bytes; least recently used entries are evicted until the
  total is at most `capacity_bytes`; a value larger than the whole capacity is returned uncached.

Cached values are shared between requests: callers must not modify them (arrays are made read-only
by the loader). Async use is from one event loop (the server's); the bookkeeping itself is guarded
by a lock, so `get` / `put` / `stats` are safe from any thread.

No vLLM import; blake3 (a vLLM dependency) when installed, else hashlib's blake2b.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

_blake3: Any
try:  # blake3 comes with vLLM: ~3x faster than blake2b on the same core
    from blake3 import blake3 as _blake3
except ImportError:  # pragma: no cover - only without vLLM's dependencies
    _blake3 = None

__all__ = [
    "CacheStats",
    "MediaCache",
    "content_digest",
    "content_key",
    "frame_key",
]

_T = TypeVar("_T")

ENTRY_OVERHEAD_BYTES = 512
"""Bytes accounted per entry on top of its value's pixel bytes (key, dict slot, dataclass,
timestamp lists: a few hundred bytes measured with sys.getsizeof on a 16-frame entry)."""


def content_digest(data: bytes | bytearray | memoryview) -> str:
    """Hex digest (32 bytes: 64 hex characters) of `data`: blake3, or blake2b without blake3."""
    if _blake3 is not None:
        return _blake3(data).hexdigest()
    return hashlib.blake2b(data, digest_size=32).hexdigest()


def content_key(kind: str, digest: str, **params: Any) -> str:
    """The cache key (and vLLM uuid) of one decoded item: `kind`, the digest of its bytes and every
    parameter that changes the decoded result, in a fixed order.

    `content_key("video", d, num_frames=16, fps=None, size=384, max_frames=32)` ->
    ``"video:<digest>:fps=None,max_frames=32,num_frames=16,size=384"``. Equal keys mean equal
    pixels; any change of bytes or parameters gives a different key.
    """
    if ":" in kind or "#" in kind:
        raise ValueError(f"kind must not contain ':' or '#': {kind!r}")
    suffix = ",".join(f"{name}={params[name]!r}" for name in sorted(params))
    return f"{kind}:{digest}:{suffix}"


def frame_key(video_key: str, index: int) -> str:
    """The key of frame `index` (0-based, in the sampled order) of the video keyed `video_key`:
    stable across requests, distinct per frame, so vLLM caches each frame as one image item."""
    return f"{video_key}#{index}"


@dataclass(frozen=True)
class CacheStats:
    """Counters since the cache was made (hits include waits on a load already running)."""

    hits: int
    misses: int
    evictions: int
    bytes: int
    entries: int
    capacity_bytes: int


class _Entry(Generic[_T]):
    __slots__ = ("value", "nbytes", "kind")

    def __init__(self, value: _T, nbytes: int, kind: str) -> None:
        self.value = value
        self.nbytes = nbytes
        self.kind = kind


class MediaCache:
    """Byte-bounded LRU of decoded media keyed by `content_key` (see the module docstring).

    Args:
        capacity_bytes: bound of the accounted bytes (values + `ENTRY_OVERHEAD_BYTES` each);
            0 disables the cache (`get_or_load` just runs the load, nothing is counted).
        metrics: optional object with prometheus-client metrics `media_cache_hits`,
            `media_cache_misses`, `media_cache_evictions` (counters labelled `kind`),
            `media_cache_bytes`, `media_cache_entries`, `media_cache_capacity_bytes` (gauges), as
            `server.metrics.ServerMetrics` has them. Settable later (`cache.metrics = ...`).

    Raises:
        ValueError: a negative capacity.
    """

    def __init__(self, capacity_bytes: int, metrics: Any | None = None) -> None:
        if capacity_bytes < 0:
            raise ValueError(f"capacity_bytes must be >= 0, got {capacity_bytes}")
        self.capacity_bytes = int(capacity_bytes)
        self._entries: OrderedDict[str, _Entry[Any]] = OrderedDict()
        self._inflight: dict[str, asyncio.Future[Any]] = {}
        self._lock = threading.Lock()
        self._bytes = 0
        self._hits = 0
        self._misses = 0
        self._evictions = 0
        self._metrics: Any | None = None
        self.metrics = metrics

    # -- metrics ----------------------------------------------------------------------------------

    @property
    def metrics(self) -> Any | None:
        return self._metrics

    @metrics.setter
    def metrics(self, metrics: Any | None) -> None:
        self._metrics = metrics
        if metrics is not None:
            metrics.media_cache_capacity_bytes.set(self.capacity_bytes)
            self._publish_sizes()

    def _publish_sizes(self) -> None:
        m = self._metrics
        if m is not None:
            m.media_cache_bytes.set(self._bytes)
            m.media_cache_entries.set(len(self._entries))

    def _count(self, what: str, kind: str, n: int = 1) -> None:
        m = self._metrics
        if m is not None:
            getattr(m, f"media_cache_{what}").labels(kind=kind).inc(n)

    # -- state ------------------------------------------------------------------------------------

    @property
    def enabled(self) -> bool:
        """False when the capacity is 0."""
        return self.capacity_bytes > 0

    def stats(self) -> CacheStats:
        """A snapshot of the counters and sizes."""
        with self._lock:
            return CacheStats(
                self._hits,
                self._misses,
                self._evictions,
                self._bytes,
                len(self._entries),
                self.capacity_bytes,
            )

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    # -- synchronous access -----------------------------------------------------------------------

    def get(self, key: str) -> Any | None:
        """The cached value (refreshing its LRU position), or None. Counts nothing."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._entries.move_to_end(key)
            return entry.value

    def put(self, key: str, value: Any, nbytes: int, kind: str = "other") -> bool:
        """Insert (or replace) `key`, evicting least recently used entries to stay within the bound.

        Returns False (nothing stored) when the cache is disabled or `nbytes` plus the entry
        overhead exceeds the whole capacity.
        """
        size = int(nbytes) + ENTRY_OVERHEAD_BYTES
        if not self.enabled or size > self.capacity_bytes:
            return False
        evicted: list[str] = []
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old.nbytes
            while self._entries and self._bytes + size > self.capacity_bytes:
                _, gone = self._entries.popitem(last=False)
                self._bytes -= gone.nbytes
                self._evictions += 1
                evicted.append(gone.kind)
            self._entries[key] = _Entry(value, size, kind)
            self._bytes += size
        for gone_kind in evicted:
            self._count("evictions", gone_kind)
        self._publish_sizes()
        return True

    def clear(self) -> None:
        """Drop every entry (counters stay)."""
        with self._lock:
            self._entries.clear()
            self._bytes = 0
        self._publish_sizes()

    # -- the server's path ------------------------------------------------------------------------

    async def get_or_load(
        self,
        key: str,
        kind: str,
        load: Callable[[], Awaitable[_T]],
        nbytes: Callable[[_T], int],
    ) -> _T:
        """The value of `key`: cached, or from one `load()` shared by every concurrent caller.

        Args:
            key: a `content_key`.
            kind: metrics label (`image`, `video`).
            load: makes the value (e.g. decodes in a worker thread); its exceptions reach every
                caller waiting for it and nothing is cached.
            nbytes: the accounted size of a loaded value in bytes.
        """
        if not self.enabled:
            return await load()
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                self._hits += 1
        if entry is not None:
            self._count("hits", kind)
            return entry.value
        future = self._inflight.get(key)
        if future is not None:
            with self._lock:
                self._hits += 1
            self._count("hits", kind)
            return await asyncio.shield(future)
        with self._lock:
            self._misses += 1
        self._count("misses", kind)
        future = asyncio.ensure_future(self._load(key, kind, load, nbytes))
        # Every waiter may have been cancelled: retrieve the error so asyncio does not log it.
        future.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._inflight[key] = future
        return await asyncio.shield(future)

    async def _load(
        self, key: str, kind: str, load: Callable[[], Awaitable[_T]], nbytes: Callable[[_T], int]
    ) -> _T:
        try:
            value = await load()
            self.put(key, value, nbytes(value), kind)
            return value
        finally:
            self._inflight.pop(key, None)
