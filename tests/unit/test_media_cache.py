"""server.media.cache: content keys, byte bound, LRU eviction, single-flight loads, metrics."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry

from server.media.cache import ENTRY_OVERHEAD_BYTES, MediaCache, content_digest, content_key, frame_key
from server.metrics import ServerMetrics

KB = 1024


def run(coro):
    return asyncio.run(coro)


def value_loader(value, calls: list, gate: asyncio.Event | None = None, fail: Exception | None = None):
    async def load():
        calls.append(value)
        if gate is not None:
            await gate.wait()
        if fail is not None:
            raise fail
        return value

    return load


def sample(metrics: ServerMetrics, name: str, **labels) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


# -- keys ---------------------------------------------------------------------------------------


def test_content_key_changes_with_bytes_and_every_parameter():
    d1, d2 = content_digest(b"video bytes"), content_digest(b"video bytes!")
    assert d1 != d2 and len(d1) == 64
    base = content_key("video", d1, num_frames=16, fps=None, size=384)
    assert base == content_key("video", d1, size=384, fps=None, num_frames=16)  # order-free
    others = {
        content_key("video", d2, num_frames=16, fps=None, size=384),
        content_key("video", d1, num_frames=8, fps=None, size=384),
        content_key("video", d1, num_frames=16, fps=2.0, size=384),
        content_key("video", d1, num_frames=16, fps=None, size=None),
        content_key("image", d1, num_frames=16, fps=None, size=384),
    }
    assert base not in others and len(others) == 5
    frames = [frame_key(base, i) for i in range(16)]
    assert len(set(frames)) == 16 and all(f.startswith(base + "#") for f in frames)
    with pytest.raises(ValueError):
        content_key("bad:kind", d1)


# -- byte bound and LRU -------------------------------------------------------------------------


def test_lru_eviction_keeps_the_accounted_bytes_within_the_bound():
    item = 10 * KB
    per_entry = item + ENTRY_OVERHEAD_BYTES
    cache = MediaCache(capacity_bytes=3 * per_entry)
    for k in "abc":
        assert cache.put(k, k.upper(), item, "image")
    assert cache.stats().bytes == 3 * per_entry and len(cache) == 3
    assert cache.get("a") == "A"  # a is now the most recently used: b goes first
    assert cache.put("d", "D", item, "image")
    assert "b" not in cache and {"a", "c", "d"} <= {k for k in "abcd" if k in cache}
    for i in range(20):
        cache.put(f"x{i}", i, item, "image")
        assert cache.stats().bytes <= cache.capacity_bytes
    stats = cache.stats()
    assert stats.entries == 3 and stats.evictions == 1 + 20
    assert [k for k in ("x17", "x18", "x19") if k in cache] == ["x17", "x18", "x19"]


def test_a_value_larger_than_the_bound_is_not_stored():
    cache = MediaCache(capacity_bytes=100 * KB)
    cache.put("small", 1, 10 * KB)
    assert not cache.put("huge", 2, 100 * KB)  # + the entry overhead: more than the bound
    assert "huge" not in cache and "small" in cache and cache.stats().evictions == 0


def test_replacing_a_key_accounts_it_once():
    cache = MediaCache(capacity_bytes=100 * KB)
    cache.put("k", 1, 10 * KB)
    cache.put("k", 2, 20 * KB)
    assert cache.get("k") == 2 and cache.stats().bytes == 20 * KB + ENTRY_OVERHEAD_BYTES


def test_capacity_zero_disables_the_cache():
    cache = MediaCache(0)
    calls: list = []

    async def go():
        for _ in range(3):
            assert await cache.get_or_load("k", "video", value_loader("v", calls), lambda v: 10) == "v"

    run(go())
    assert calls == ["v"] * 3 and not cache.enabled
    assert cache.stats() == cache.stats().__class__(0, 0, 0, 0, 0, 0)
    with pytest.raises(ValueError):
        MediaCache(-1)


# -- single flight ------------------------------------------------------------------------------


def test_concurrent_first_requests_load_once():
    cache = MediaCache(capacity_bytes=10 * 2**20)
    calls: list = []

    async def go():
        gate = asyncio.Event()
        load = value_loader("frames", calls, gate)
        tasks = [asyncio.ensure_future(cache.get_or_load("k", "video", load, lambda v: KB)) for _ in range(5)]
        for _ in range(100):  # until the load runs and every caller waits on it (bounded)
            await asyncio.sleep(0)
        assert calls == ["frames"]
        gate.set()
        return await asyncio.gather(*tasks)

    assert run(go()) == ["frames"] * 5
    stats = cache.stats()
    assert calls == ["frames"] and stats.misses == 1 and stats.hits == 4 and stats.entries == 1


def test_a_failed_load_reaches_every_waiter_and_is_not_cached():
    cache = MediaCache(capacity_bytes=10 * 2**20)
    calls: list = []

    async def go():
        gate = asyncio.Event()
        load = value_loader("x", calls, gate, fail=ValueError("not a video"))
        tasks = [asyncio.ensure_future(cache.get_or_load("k", "video", load, lambda v: KB)) for _ in range(3)]
        for _ in range(100):
            await asyncio.sleep(0)
        gate.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(r, ValueError) and str(r) == "not a video" for r in results)
        # not cached: the next request loads again (and succeeds)
        assert await cache.get_or_load("k", "video", value_loader("ok", calls), lambda v: KB) == "ok"

    run(go())
    assert calls == ["x", "ok"] and "k" in cache and cache.stats().misses == 2


def test_a_cancelled_caller_does_not_cancel_the_load_others_wait_for():
    cache = MediaCache(capacity_bytes=10 * 2**20)
    calls: list = []

    async def go():
        gate = asyncio.Event()
        load = value_loader("v", calls, gate)
        first = asyncio.ensure_future(cache.get_or_load("k", "video", load, lambda v: KB))
        second = asyncio.ensure_future(cache.get_or_load("k", "video", load, lambda v: KB))
        for _ in range(100):
            await asyncio.sleep(0)
        assert calls == ["v"]
        first.cancel()  # the client of the request that started the decode went away
        for _ in range(10):
            await asyncio.sleep(0)
        gate.set()
        assert await second == "v"
        assert first.cancelled()

    run(go())
    assert calls == ["v"] and cache.get("k") == "v"


# -- metrics ------------------------------------------------------------------------------------


def test_metrics_follow_hits_misses_evictions_and_bytes():
    metrics = ServerMetrics(CollectorRegistry())
    item = 50 * KB
    cache = MediaCache(capacity_bytes=2 * (item + ENTRY_OVERHEAD_BYTES), metrics=metrics)
    assert sample(metrics, "interleave_media_cache_capacity_bytes") == cache.capacity_bytes
    calls: list = []

    async def go():
        for key, kind in (("a", "image"), ("a", "image"), ("v", "video"), ("v", "video"), ("w", "video")):
            await cache.get_or_load(key, kind, value_loader(key, calls), lambda v: item)

    run(go())
    assert calls == ["a", "v", "w"]
    assert sample(metrics, "interleave_media_cache_misses_total", kind="image") == 1
    assert sample(metrics, "interleave_media_cache_hits_total", kind="image") == 1
    assert sample(metrics, "interleave_media_cache_misses_total", kind="video") == 2
    assert sample(metrics, "interleave_media_cache_hits_total", kind="video") == 1
    assert sample(metrics, "interleave_media_cache_evictions_total", kind="image") == 1  # "a" was LRU
    assert sample(metrics, "interleave_media_cache_entries") == 2
    assert (
        sample(metrics, "interleave_media_cache_bytes")
        == cache.stats().bytes
        == 2 * (item + ENTRY_OVERHEAD_BYTES)
    )
