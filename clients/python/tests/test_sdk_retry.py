"""Retries against a real local stub server (fault injection): attempts counted and spacing recorded
on the server side."""

from __future__ import annotations

import socket
import time
from email.utils import format_datetime
from datetime import datetime, timezone

import pytest

import llava_interleave_client as sdk
from llava_interleave_client._retry import MAX_RETRY_DELAY, parse_retry_after, retry_delay

from sdk_stub_server import Reply, StubServer, chunk, completion, sse, stream_events

pytestmark = pytest.mark.unit

ERR_503 = {"error": {"message": "engine busy", "type": "service_unavailable", "param": None, "code": None}}
ERR_429 = {"error": {"message": "slow down", "type": "rate_limit_error", "param": None, "code": None}}


def _ask(client: sdk.Client, **kw):
    return client.chat.completions.create(model="stub-model", messages=[sdk.user("hi")], **kw)


def _gap(stub: StubServer) -> float:
    a = stub.chat_arrivals
    return a[1].time - a[0].time


@pytest.mark.parametrize("status, body", [(503, ERR_503), (429, ERR_429)])
def test_retry_after_seconds_is_honoured(status, body):
    script = [Reply(status=status, body=body, headers={"retry-after": "1"}), Reply(body=completion("ok"))]
    with StubServer(script) as stub, sdk.Client(base_url=stub.base_url) as client:
        out = _ask(client)
    assert out.choices[0].message.content == "ok"
    assert len(stub.chat_arrivals) == 2
    assert _gap(stub) >= 0.9


def test_retry_after_ms_is_honoured():
    script = [Reply(status=503, body=ERR_503, headers={"retry-after-ms": "600", "retry-after": "30"}),
              Reply(body=completion("ok"))]
    with StubServer(script) as stub, sdk.Client(base_url=stub.base_url) as client:
        _ask(client)
    assert len(stub.chat_arrivals) == 2
    assert 0.5 <= _gap(stub) < 10  # the -ms header wins over retry-after: 30


def test_retries_are_bounded_by_max_retries():
    script = [Reply(status=503, body=ERR_503, headers={"retry-after": "0", "x-request-id": "req-9"})]
    with StubServer(script) as stub, sdk.Client(base_url=stub.base_url, max_retries=3) as client:
        with pytest.raises(sdk.ServiceUnavailableError) as info:
            _ask(client)
        assert len(stub.chat_arrivals) == 4  # 1 + 3 retries
        assert info.value.message == "engine busy" and info.value.request_id == "req-9"

        with pytest.raises(sdk.ServiceUnavailableError):
            _ask(client, max_retries=0)  # per-request override
        assert len(stub.chat_arrivals) == 5


@pytest.mark.parametrize("status", [502, 504])
def test_gateway_errors_are_retried(status):
    script = [Reply(status=status, body=b"bad gateway", headers={"retry-after": "0"}), Reply(body=completion("ok"))]
    with StubServer(script) as stub, sdk.Client(base_url=stub.base_url) as client:
        assert _ask(client).choices[0].message.content == "ok"
    assert len(stub.chat_arrivals) == 2


@pytest.mark.parametrize("status, cls", [(400, sdk.BadRequestError), (500, sdk.InternalServerError),
                                         (413, sdk.RequestTooLargeError)])
def test_other_errors_are_not_retried(status, cls):
    with StubServer([Reply(status=status, body=ERR_503)]) as stub, sdk.Client(base_url=stub.base_url) as client:
        with pytest.raises(cls):
            _ask(client)
    assert len(stub.chat_arrivals) == 1


def test_server_can_veto_or_force_a_retry():
    with StubServer([Reply(status=503, body=ERR_503, headers={"x-should-retry": "false"})]) as stub, \
            sdk.Client(base_url=stub.base_url) as client:
        with pytest.raises(sdk.ServiceUnavailableError):
            _ask(client)
    assert len(stub.chat_arrivals) == 1
    script = [Reply(status=500, body=ERR_503, headers={"x-should-retry": "true", "retry-after": "0"}),
              Reply(body=completion("ok"))]
    with StubServer(script) as stub, sdk.Client(base_url=stub.base_url) as client:
        _ask(client)
    assert len(stub.chat_arrivals) == 2


def test_dropped_connection_is_retried():
    with StubServer([Reply(drop=True), Reply(body=completion("ok"))]) as stub, \
            sdk.Client(base_url=stub.base_url) as client:
        assert _ask(client).choices[0].message.content == "ok"
    assert len(stub.chat_arrivals) == 2


def test_timeouts_are_retried_then_raised():
    with StubServer([Reply(delay=1.0, body=completion("late")), Reply(body=completion("ok"))]) as stub, \
            sdk.Client(base_url=stub.base_url, timeout=0.3) as client:
        assert _ask(client).choices[0].message.content == "ok"
        assert len(stub.chat_arrivals) == 2
    with StubServer([Reply(delay=1.0, body=completion("late"))]) as stub, \
            sdk.Client(base_url=stub.base_url, timeout=0.3, max_retries=1) as client:
        with pytest.raises(sdk.APITimeoutError):
            _ask(client)
        assert len(stub.chat_arrivals) == 2


def test_connection_refused_raises_connection_error():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with sdk.Client(base_url=f"http://127.0.0.1:{port}/v1", max_retries=1) as client:
        t0 = time.monotonic()
        with pytest.raises(sdk.APIConnectionError) as info:
            _ask(client)
        assert not isinstance(info.value, sdk.APITimeoutError)
        assert time.monotonic() - t0 >= 0.3  # one backoff step (0.5 s minus up to 25 % jitter)


def test_started_stream_that_breaks_is_not_retried():
    events = [sse(chunk(role="assistant", content="")), sse(chunk("par")), 0.05, "drop"]
    with StubServer([Reply(events=events), Reply(events=stream_events("never"))]) as stub, \
            sdk.Client(base_url=stub.base_url, max_retries=3) as client:
        stream = _ask(client, stream=True)
        got = []
        with pytest.raises(sdk.APIConnectionError):
            for c in stream:
                got.append(c)
        assert [c.choices[0].delta.content for c in got] == ["", "par"]
        assert stream.closed
        time.sleep(0.2)
        assert len(stub.chat_arrivals) == 1


def test_stream_error_event_raises_and_is_not_retried():
    err = {"error": {"message": "KV cache exhausted", "type": "server_error", "param": None, "code": 500}}
    events = [sse(chunk(role="assistant", content="")), sse(err), sse("[DONE]")]
    with StubServer([Reply(events=events, headers={"x-request-id": "req-e"})]) as stub, \
            sdk.Client(base_url=stub.base_url) as client:
        with pytest.raises(sdk.APIStreamError) as info:
            for _ in _ask(client, stream=True):
                pass
        assert info.value.message == "KV cache exhausted" and info.value.code == 500
        assert info.value.request_id == "req-e"
        assert len(stub.chat_arrivals) == 1


def test_stream_refused_before_it_started_is_retried():
    script = [Reply(status=503, body=ERR_503, headers={"retry-after": "1"}), Reply(events=stream_events("fine"))]
    with StubServer(script) as stub, sdk.Client(base_url=stub.base_url) as client:
        with _ask(client, stream=True) as stream:
            text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "fine"
    assert len(stub.chat_arrivals) == 2 and _gap(stub) >= 0.9


@pytest.mark.asyncio
async def test_async_retry_after_and_stream_error():
    script = [Reply(status=429, body=ERR_429, headers={"retry-after": "1"}), Reply(body=completion("ok"))]
    with StubServer(script) as stub:
        async with sdk.AsyncClient(base_url=stub.base_url) as client:
            out = await client.chat.completions.create(model="stub-model", messages=[sdk.user("hi")])
    assert out.choices[0].message.content == "ok"
    assert len(stub.chat_arrivals) == 2 and _gap(stub) >= 0.9

    events = [sse(chunk("a")), 0.05, "drop"]
    with StubServer([Reply(events=events)]) as stub:
        async with sdk.AsyncClient(base_url=stub.base_url, max_retries=2) as client:
            stream = await client.chat.completions.create(model="stub-model", messages=[sdk.user("hi")], stream=True)
            with pytest.raises(sdk.APIConnectionError):
                async for _ in stream:
                    pass
            assert stream.closed
    assert len(stub.chat_arrivals) == 1


def test_parse_retry_after_forms():
    now = 1_700_000_000.0
    date = format_datetime(datetime.fromtimestamp(now + 3, tz=timezone.utc), usegmt=True)
    assert parse_retry_after({"retry-after": "2"}) == 2.0
    assert parse_retry_after({"retry-after": "1.5"}) == 1.5
    assert parse_retry_after({"retry-after-ms": "250"}) == 0.25
    assert parse_retry_after({"retry-after": date}, now=now) == pytest.approx(3.0)
    past = format_datetime(datetime.fromtimestamp(now - 100, tz=timezone.utc), usegmt=True)
    assert parse_retry_after({"retry-after": past}, now=now) == 0.0
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None


def test_backoff_grows_with_jitter_and_is_capped():
    for attempt in range(8):
        base = min(0.5 * 2**attempt, MAX_RETRY_DELAY)
        for _ in range(20):
            assert 0.75 * base <= retry_delay(attempt) <= base
    assert retry_delay(0, {"retry-after": "1"}) == 1.0
    assert retry_delay(0, {"retry-after": "3600"}) <= 0.5  # absurd hints fall back to backoff
