"""A client that closes a stream after the first chunk has its engine request aborted."""

from __future__ import annotations

import re
import time

import httpx
import pytest


def _gauges(client: httpx.Client) -> tuple[float, float]:
    text = client.get("/metrics").text
    ours = re.search(r"^interleave_requests_in_flight (\S+)$", text, re.M)
    running = re.search(r"^vllm:num_requests_running\{[^}]*\} (\S+)$", text, re.M)
    assert ours and running, "metrics missing"
    return float(ours.group(1)), float(running.group(1))


def _poll_until_idle(client: httpx.Client, bound_s: float = 2.0) -> tuple[float, float]:
    deadline = time.monotonic() + bound_s
    values = _gauges(client)
    while values != (0.0, 0.0) and time.monotonic() < deadline:
        time.sleep(0.05)
        values = _gauges(client)
    return values


def test_disconnect_after_first_chunk_aborts(live_server, client, model_name):
    body = {
        "model": model_name,
        "messages": [{"role": "user", "content": "Write a very long story."}],
        "max_tokens": 4000,
        "temperature": 1.0,
        "seed": 3,
        "stream": True,
    }
    before = _gauges(client)
    with httpx.Client(base_url=live_server.base_url, timeout=60) as streamer:
        with streamer.stream("POST", "/v1/chat/completions", json=body) as r:
            assert r.status_code == 200
            lines = r.iter_lines()
            first = next(line for line in lines if line.startswith("data: "))
            during = _gauges(client)
            if during[0] != 1.0:
                rest = [line for line in lines if line]
                pytest.fail(
                    f"not in flight while open: before={before} during={during}; first={first[:300]}; "
                    f"rest of stream ({len(rest)} lines): {rest[-3:]}"
                )
    # closed after the first chunk: both gauges return to 0 within 2 s (polled, not timed)
    assert _poll_until_idle(client) == (0.0, 0.0)
    # the server carries on
    r = client.post("/v1/chat/completions", json={**body, "stream": False, "max_tokens": 3})
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 3
