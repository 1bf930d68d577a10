"""SSE decoding and the Stream / AsyncStream iterators (always closing their response)."""

from __future__ import annotations

import gc

import httpx
import pytest

import llava_interleave_client as sdk
from llava_interleave_client._streaming import SSEDecoder

from sdk_stub_server import chunk, sse, stream_events

pytestmark = pytest.mark.unit


def test_sse_decoder_fields_comments_and_multiline():
    lines = [": keep-alive", "event: message", "data: {\"a\":", "data: 1}", "id: 7", "retry: 100", "",
             "data:no-space", "", "data: last-without-blank-line"]
    events = list(SSEDecoder().iter_events(lines))
    assert [e.data for e in events] == ['{"a":\n1}', "no-space", "last-without-blank-line"]
    assert events[0].event == "message" and events[0].id == "7" and events[0].retry == 100
    assert events[0].json() == {"a": 1}


class StreamTransport:
    """MockTransport answering every request with a stream of the given bytes; remembers the responses."""

    def __init__(self, *events: bytes, status: int = 200, headers=None):
        self.events, self.status, self.headers = events, status, headers or {}
        self.streams: list = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        stream = _Body(self.events)
        self.streams.append(stream)
        headers = {"content-type": "text/event-stream", "x-request-id": "req-s", **self.headers}
        return httpx.Response(self.status, headers=headers, stream=stream)


class _Body(httpx.SyncByteStream, httpx.AsyncByteStream):
    def __init__(self, events):
        self.events, self.closed = events, False

    def __iter__(self):
        yield from self.events

    async def __aiter__(self):
        for e in self.events:
            yield e

    def close(self):
        self.closed = True

    async def aclose(self):
        self.closed = True


def _client(t: StreamTransport) -> sdk.Client:
    return sdk.Client(base_url="http://127.0.0.1:9/v1", max_retries=0,
                      http_client=httpx.Client(transport=httpx.MockTransport(t.handler)))


def _create(client, **kw):
    return client.chat.completions.create(model="m", messages=[sdk.user("x")], stream=True, **kw)


def test_stream_yields_typed_chunks_and_closes_on_exhaustion():
    t = StreamTransport(*stream_events("Hel", "lo", usage=True))
    client = _client(t)
    stream = _create(client, stream_options={"include_usage": True})
    assert isinstance(stream, sdk.Stream)
    chunks = list(stream)
    assert all(isinstance(c, sdk.ChatCompletionChunk) for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello"
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == 7
    assert stream.closed and t.streams[0].closed


def test_stream_request_body_and_accept_header():
    seen = []

    def handler(request):
        seen.append(request)
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=b"".join(stream_events("a")))

    c = sdk.Client(base_url="http://127.0.0.1:9/v1", http_client=httpx.Client(transport=httpx.MockTransport(handler)))
    list(_create(c, stream_options={"include_usage": True}))
    import json

    body = json.loads(seen[0].content)
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert seen[0].headers["accept"] == "text/event-stream"


def test_stream_closes_on_context_exit_and_on_close():
    t = StreamTransport(*stream_events("a", "b", "c"))
    client = _client(t)
    with _create(client) as stream:
        next(stream)
    assert stream.closed and t.streams[0].closed

    stream = _create(client)
    next(stream)
    stream.close()
    stream.close()  # idempotent
    assert stream.closed and t.streams[1].closed
    with pytest.raises(StopIteration):
        next(stream)


def test_stream_closes_on_garbage_collection():
    t = StreamTransport(*stream_events("a", "b"))
    stream = _create(_client(t))
    next(stream)
    del stream
    gc.collect()
    assert t.streams[0].closed


def test_unread_stream_is_closed_on_garbage_collection_too():
    t = StreamTransport(*stream_events("a"))
    stream = _create(_client(t))
    response = stream.response
    del stream
    gc.collect()
    assert response.is_closed and t.streams[0].closed


def test_error_event_raises_and_closes():
    err = {"error": {"message": "engine died", "type": "server_error", "param": None, "code": "engine_dead"}}
    t = StreamTransport(sse(chunk(role="assistant", content="")), sse(chunk("par")), sse(err), sse("[DONE]"))
    stream = _create(_client(t))
    got = []
    with pytest.raises(sdk.APIStreamError) as info:
        for c in stream:
            got.append(c)
    assert len(got) == 2
    exc = info.value
    assert exc.message == "engine died" and exc.type == "server_error" and exc.code == "engine_dead"
    assert exc.request_id == "req-s" and exc.body == err
    assert stream.closed and t.streams[0].closed


def test_truncated_stream_raises_connection_error():
    t = StreamTransport(sse(chunk(role="assistant", content="")), sse(chunk("par")))
    stream = _create(_client(t))
    with pytest.raises(sdk.APIConnectionError, match=r"\[DONE\]"):
        list(stream)
    assert stream.closed


def test_garbage_event_raises_validation_error():
    t = StreamTransport(b"data: not json\n\n", sse("[DONE]"))
    with pytest.raises(sdk.APIResponseValidationError, match="not JSON"):
        list(_create(_client(t)))
    t = StreamTransport(sse({"id": "x"}), sse("[DONE]"))
    with pytest.raises(sdk.APIResponseValidationError, match="unexpected stream event"):
        list(_create(_client(t)))


def test_error_status_before_the_stream_maps_to_status_error():
    t = StreamTransport(b'{"error": {"message": "too many images", "type": "invalid_request_error"}}',
                        status=400, headers={"content-type": "application/json"})
    with pytest.raises(sdk.BadRequestError, match="too many images") as info:
        _create(_client(t))
    assert info.value.request_id == "req-s"
    assert t.streams[0].closed


@pytest.mark.asyncio
async def test_async_stream_chunks_error_event_and_close():
    t = StreamTransport(*stream_events("x", "y"))
    client = sdk.AsyncClient(base_url="http://127.0.0.1:9/v1", max_retries=0,
                             http_client=httpx.AsyncClient(transport=httpx.MockTransport(t.handler)))
    stream = await client.chat.completions.create(model="m", messages=[sdk.user("x")], stream=True)
    assert isinstance(stream, sdk.AsyncStream)
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "xy" and stream.closed and t.streams[0].closed

    async with await client.chat.completions.create(model="m", messages=[sdk.user("x")], stream=True) as stream:
        await stream.__anext__()
    assert stream.closed and t.streams[1].closed

    t.events = (sse(chunk("a")), sse({"error": {"message": "boom", "type": "server_error"}}), sse("[DONE]"))
    stream = await client.chat.completions.create(model="m", messages=[sdk.user("x")], stream=True)
    with pytest.raises(sdk.APIStreamError, match="boom"):
        async for _ in stream:
            pass
    assert stream.closed and t.streams[2].closed
    await client.close()
