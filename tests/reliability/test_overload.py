"""Concurrency far past the admission bound: the excess is refused at once with 503 + Retry-After,
every admitted request completes, and /health keeps answering throughout."""

from __future__ import annotations

import asyncio
import statistics

import httpx

from harness.load import mixed_content, run_load

OVERLOAD = 96  # concurrent requests, each with an 8-frame video (8 images, 5,832 visual tokens)


async def _overload(base_url: str):
    bodies = [
        {
            "messages": [{"role": "user", "content": mixed_content("video", k, num_frames=8)}],
            "max_tokens": 8,
            "stream": k % 2 == 0,
        }
        for k in range(OVERLOAD)
    ]
    health: list[int] = []
    stop = asyncio.Event()

    async def poll_health() -> None:
        async with httpx.AsyncClient(timeout=1.0) as client:  # /health must answer within 1 s
            while not stop.is_set():
                health.append((await client.get(base_url + "/health")).status_code)
                try:
                    await asyncio.wait_for(stop.wait(), 0.1)
                except asyncio.TimeoutError:
                    pass

    poller = asyncio.create_task(poll_health())
    try:
        outs = await run_load(base_url, bodies, concurrency=OVERLOAD, timeout=300)
    finally:
        stop.set()
    await poller
    return outs, health


def test_overload_is_refused_fast_and_admitted_requests_complete(reliability_server, admission_bound):
    outs, health = asyncio.run(_overload(reliability_server.base_url))
    rejected = [o for o in outs if o.status == 503]
    admitted = [o for o in outs if o.status == 200]
    assert len(rejected) + len(admitted) == OVERLOAD, sorted({o.status for o in outs})
    assert len(rejected) >= OVERLOAD - 3 * admission_bound  # far past the bound: most refused
    assert all(o.ok for o in admitted), [o.error for o in admitted if not o.ok]
    for o in rejected:
        assert o.headers.get("retry-after") == "1"
        assert o.error["error"]["code"] == "server_overloaded", o.error
    # Refusals do not wait for capacity: each was answered before the median admitted request ended.
    first_done = statistics.median(o.started + o.seconds for o in admitted)
    assert all(o.started + o.seconds < first_done for o in rejected)
    assert health and set(health) == {200}
    print(
        f"\noverload: {OVERLOAD} concurrent, {len(admitted)} admitted, {len(rejected)} refused; "
        f"refusal latency max {max(o.seconds for o in rejected):.3f} s, "
        f"admitted p50 {statistics.median(o.seconds for o in admitted):.2f} s; /health polls {len(health)}"
    )
    metrics = httpx.get(reliability_server.base_url + "/metrics").text
    assert 'interleave_rejected_requests_total{reason="requests"}' in metrics or (
        'interleave_rejected_requests_total{reason="images"}' in metrics
    )
