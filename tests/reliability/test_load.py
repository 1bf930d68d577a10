"""200 mixed requests (text, images, video, scene; half streaming) at concurrency 16, twice: no 5xx,
nothing lost, and the server's memory after the second run within 10 % of the first."""

from __future__ import annotations

import asyncio

import psutil

from harness.load import mixed_body, run_load, summary

REQUESTS = 200
CONCURRENCY = 16


def _tree_rss(pid: int) -> int:
    """Resident bytes of the server and every process it spawned (the engine processes)."""
    root = psutil.Process(pid)
    total = 0
    for proc in [root, *root.children(recursive=True)]:
        try:
            total += proc.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def test_mixed_load_twice(reliability_server):
    rss = []
    for run in range(2):
        bodies = [mixed_body(k + 1000 * run) for k in range(REQUESTS)]
        outs = asyncio.run(run_load(reliability_server.base_url, bodies, concurrency=CONCURRENCY))
        stats = summary(outs)
        print(f"\nload run {run + 1}: {stats}")
        assert stats["ok"] == REQUESTS, [(o.index, o.status, o.error) for o in outs if not o.ok][:5]
        rss.append(_tree_rss(reliability_server.process.pid))
    print(f"RSS after run 1: {rss[0] / 2**30:.2f} GiB, after run 2: {rss[1] / 2**30:.2f} GiB")
    assert rss[1] <= rss[0] * 1.10
