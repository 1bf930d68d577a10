"""A client that closes a stream after the first chunk has its engine request aborted."""

from __future__ import annotations

import re
import time

import httpx
import pytest

MAX_TOKENS = 4000


def _metric(text: str, pattern: str) -> float:
    found = re.search(pattern, text, re.M)
    assert found, f"metric missing: {pattern}"
    return float(found.group(1))


def _gauges(client: httpx.Client) -> tuple[float, float]:
    text = client.get("/metrics").text
    return (
        _metric(text, r"^interleave_requests_in_flight (\S+)$"),
        _metric(text, r"^vllm:num_requests_running\{[^}]*\} (\S+)$"),
    )


def _engine_generated_tokens(client: httpx.Client) -> float:
    return _metric(client.get("/metrics").text, r"^vllm:generation_tokens_total\{[^}]*\} (\S+)$")


def _poll_until_idle(client: httpx.Client, bound_s: float = 120.0) -> tuple[float, float]:
    """Poll the two in-flight gauges until both are 0 (``bound_s`` only guards against a hang)."""
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
        "max_tokens": MAX_TOKENS,
        "temperature": 1.0,
        "seed": 3,
        "stream": True,
    }
    before = _gauges(client)
    generated_before = _engine_generated_tokens(client)
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
    # closed after the first chunk: the request leaves both gauges, and the engine stopped it
    # (it generated far fewer than max_tokens: a stream left running would have made all of them)
    assert _poll_until_idle(client) == (0.0, 0.0)
    generated = _engine_generated_tokens(client) - generated_before
    assert generated < MAX_TOKENS / 2, (
        f"the engine generated {generated:g} of {MAX_TOKENS} tokens after the disconnect"
    )
    # the server carries on
    r = client.post("/v1/chat/completions", json={**body, "stream": False, "max_tokens": 3})
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 3
