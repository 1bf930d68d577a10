"""Admission bounds, per-request deadlines and the engine watchdog on the real HTTP layer with a fake
engine (no vLLM): past a bound 503 ``server_overloaded`` with Retry-After at once; past
``--request-timeout-seconds`` the engine request is aborted and the answer is 504 (or an SSE error
event once streaming), for chat and completions alike; a dead engine turns /health and new requests
into 503 ``engine_dead``."""

from __future__ import annotations

import asyncio
import json

import pytest
from prometheus_client import CollectorRegistry
from server_fakes import FakeEngine, running_app, sample_value

from server.admission import Admission, AdmissionLimits
from server.errors import APIError
from server.metrics import ServerMetrics
from server.settings import ServerSettings

CHAT = "/v1/chat/completions"


def chat(**kw):
    return {"messages": [{"role": "user", "content": "hello"}], "max_tokens": 50, **kw}


def test_admission_bounds_and_release():
    adm = Admission(
        AdmissionLimits(max_requests=2, max_images=10, max_body_bytes=100), ServerMetrics(CollectorRegistry())
    )
    big = adm.admit(images=50, body_bytes=500)  # alone: always admitted, even past every bound
    with pytest.raises(APIError) as exc:
        adm.admit(images=0, body_bytes=0 + 101)
    assert exc.value.status_code == 503 and exc.value.code == "server_overloaded"
    assert exc.value.headers == {"Retry-After": "1"}
    adm.release(big)
    adm.release(big)  # twice: no-op
    assert (adm.requests, adm.images, adm.body_bytes) == (0, 0, 0)
    a = adm.admit(images=6, body_bytes=10)
    with pytest.raises(APIError, match="images"):
        adm.admit(images=5, body_bytes=10)
    b = adm.admit(images=4, body_bytes=10)
    with pytest.raises(APIError, match="requests are in flight"):
        adm.admit(images=0, body_bytes=0)
    adm.release(a)
    adm.release(b)
    assert adm.requests == 0


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
@pytest.mark.parametrize("path", [CHAT, "/v1/completions"])
async def test_request_deadline_aborts_and_answers_504(path, stream):
    settings = ServerSettings(request_timeout_seconds=0.3)
    async with running_app(settings, FakeEngine(token_delay=0.05)) as h:
        payload = (
            chat(stream=stream) if path == CHAT else {"prompt": "hello", "max_tokens": 50, "stream": stream}
        )
        r = await h.client.post(path, json=payload)
        if stream:
            assert r.status_code == 200
            events = [b[6:] for b in r.text.split("\n\n") if b.startswith("data: ")]
            assert events[-1] == "[DONE]"
            err = json.loads(events[-2])["error"]
        else:
            assert r.status_code == 504, r.text
            err = r.json()["error"]
        assert err["code"] == "timeout" and "--request-timeout-seconds" in err["message"]
        for _ in range(100):  # the abort is scheduled on the loop
            if h.engine.aborted:
                break
            await asyncio.sleep(0.01)
        assert h.engine.aborted
        assert sample_value(h.metrics, "interleave_request_timeouts_total", {"phase": "request"}) == 1
        assert h.app.state.interleave.admission.requests == 0  # released after the response


async def test_concurrency_past_the_bound_is_refused_at_once():
    settings = ServerSettings(max_concurrent_requests=2)
    async with running_app(settings, FakeEngine(token_delay=0.05)) as h:
        results = await asyncio.gather(*(h.client.post(CHAT, json=chat(max_tokens=20)) for _ in range(6)))
        statuses = sorted(r.status_code for r in results)
        assert statuses.count(200) >= 2 and statuses.count(503) >= 1
        for r in results:
            if r.status_code == 503:
                assert r.headers["retry-after"] == "1" and r.json()["error"]["code"] == "server_overloaded"
        assert sample_value(h.metrics, "interleave_rejected_requests_total", {"reason": "requests"}) >= 1
        assert h.app.state.interleave.admission.requests == 0


async def test_dead_engine_turns_health_and_requests_into_503():
    engine = FakeEngine()
    async with running_app(ServerSettings(), engine) as h:
        assert (await h.client.get("/health")).status_code == 200
        engine.dead = True
        for _ in range(100):  # the watchdog polls every 0.5 s
            if h.app.state.interleave.phase == "engine_dead":
                break
            await asyncio.sleep(0.05)
        assert h.app.state.interleave.phase == "engine_dead"
        health = await h.client.get("/health")
        assert health.status_code == 503 and health.json()["status"] == "engine_dead"
        r = await h.client.post(CHAT, json=chat())
        assert r.status_code == 503 and r.json()["error"]["code"] == "engine_dead"
        assert "retry-after" not in r.headers and "retry shortly" not in r.text
