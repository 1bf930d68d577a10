"""``Client`` / ``AsyncClient`` against the local stub server: our defaults, our fields on the wire,
openai's errors / retries / streams as this server triggers them, and the ``[DONE]`` check we add."""

from __future__ import annotations

import time

import anyio
import openai
import pytest
from sdk_stub_server import Reply, StubServer, chunk, completion, sse, stream_events

import llava_interleave_client as sdk

pytestmark = pytest.mark.unit

ERR_400 = {
    "error": {
        "message": "prompt (12000 tokens) + max_tokens (64) > context (8192)",
        "type": "invalid_request_error",
        "param": "max_tokens",
        "code": "context_length_exceeded",
    }
}
ERR_503 = {"error": {"message": "engine busy", "type": "service_unavailable", "param": None, "code": None}}


def _ask(client: sdk.Client, **kw):
    return client.chat.completions.create(model="stub-model", messages=[sdk.user("hi")], **kw)


@pytest.fixture
def sleeps(monkeypatch) -> list:
    """The waits openai's retry asks for (seconds), recorded instead of slept."""
    waits: list = []
    monkeypatch.setattr(time, "sleep", waits.append)

    async def asleep(seconds: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr(anyio, "sleep", asleep)
    return waits


def test_defaults_and_env(monkeypatch):
    for name in ("INTERLEAVE_BASE_URL", "INTERLEAVE_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-must-not-leak")
    client = sdk.Client()
    assert isinstance(client, openai.OpenAI) and isinstance(sdk.AsyncClient(), openai.AsyncOpenAI)
    assert str(client.base_url) == "http://127.0.0.1:8000/v1/" and client.api_key == sdk.NO_API_KEY
    assert client.max_retries == 2 and client.timeout.read == 600 and client.timeout.connect == 5.0
    with StubServer([Reply(body=completion())]) as stub:
        monkeypatch.setenv("INTERLEAVE_BASE_URL", stub.base_url)
        monkeypatch.setenv("INTERLEAVE_API_KEY", "sk-env")
        assert [m.id for m in sdk.Client().models.list()] == ["stub-model"]
        sdk.Client(api_key="sk-arg").with_options(max_retries=0).models.list()
    assert [a.headers["authorization"] for a in stub.arrivals] == ["Bearer sk-env", "Bearer sk-arg"]
    assert stub.arrivals[0].path == "/v1/models"


def test_our_parts_and_fields_reach_the_server_unchanged():
    parts = [
        "Compare",
        sdk.image("https://h/a.png"),
        sdk.video("https://h/v.mp4", num_frames=4, fps=2),
        sdk.scene(["https://h/1.png", "https://h/2.png"], labels=["front", "back"]),
        "what changed?",
    ]
    body = completion("hi there")
    body["choices"][0]["stop_reason"] = 151645  # a field openai's types do not know
    with (
        StubServer([Reply(body=body, headers={"x-request-id": "r1"})]) as stub,
        sdk.Client(base_url=stub.base_url) as client,
    ):
        out = client.chat.completions.create(
            model="stub-model",
            messages=[sdk.system("be brief"), sdk.user(*parts)],
            max_tokens=5,
            seed=7,
            extra_body={"image_placement": "front"},
        )
    assert stub.chat_arrivals[0].body == {
        "model": "stub-model",
        "max_tokens": 5,
        "seed": 7,
        "image_placement": "front",
        "messages": [
            {"role": "system", "content": "be brief"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Compare"},
                    {"type": "image_url", "image_url": {"url": "https://h/a.png"}},
                    {
                        "type": "video_url",
                        "video_url": {"url": "https://h/v.mp4", "num_frames": 4, "fps": 2.0},
                    },
                    {
                        "type": "scene_views",
                        "scene_views": {
                            "urls": ["https://h/1.png", "https://h/2.png"],
                            "labels": ["front", "back"],
                        },
                    },
                    {"type": "text", "text": "what changed?"},
                ],
            },
        ],
    }
    assert isinstance(out, sdk.ChatCompletion) and out.choices[0].message.content == "hi there"
    assert out.usage.prompt_tokens == 735 and out.choices[0].model_extra == {"stop_reason": 151645}


@pytest.mark.parametrize(
    "status, cls",
    [
        (400, sdk.BadRequestError),
        (401, sdk.AuthenticationError),
        (404, sdk.NotFoundError),
        (413, sdk.APIStatusError),
    ],
)
def test_server_errors_are_openai_errors_with_request_id(status, cls):
    with (
        StubServer([Reply(status=status, body=ERR_400, headers={"x-request-id": "req-1"})]) as stub,
        sdk.Client(base_url=stub.base_url) as client,
    ):
        with pytest.raises(cls) as info:
            _ask(client)
    exc = info.value
    assert type(exc) is cls and exc.status_code == status and exc.request_id == "req-1"
    assert exc.body["message"] == ERR_400["error"]["message"]
    assert exc.param == "max_tokens" and exc.code == "context_length_exceeded"
    assert len(stub.chat_arrivals) == 1  # not retried


def test_retries_honour_retry_after(sleeps):
    script = [
        Reply(status=503, body=ERR_503, headers={"retry-after": "1"}),
        Reply(status=429, body=ERR_503),
        Reply(body=completion("ok")),
    ]
    with StubServer(script) as stub, sdk.Client(base_url=stub.base_url) as client:
        assert _ask(client).choices[0].message.content == "ok"
    assert len(stub.chat_arrivals) == 3
    assert sleeps[0] == 1.0 and 0.75 <= sleeps[1] <= 1.0  # the server's hint, then backoff 1 s - jitter

    with (
        StubServer(
            [Reply(status=503, body=ERR_503, headers={"retry-after": "0", "x-request-id": "q"})]
        ) as stub,
        sdk.Client(base_url=stub.base_url, max_retries=3) as client,
    ):
        with pytest.raises(sdk.InternalServerError) as info:
            _ask(client)
    assert len(stub.chat_arrivals) == 4 and info.value.status_code == 503 and info.value.request_id == "q"


def test_stream_chunks_are_openai_types():
    with (
        StubServer([Reply(events=stream_events("Hel", "lo", usage=True))]) as stub,
        sdk.Client(base_url=stub.base_url) as client,
    ):
        with _ask(client, stream=True, stream_options={"include_usage": True}) as stream:
            chunks = list(stream)
    assert isinstance(stream, sdk.Stream) and all(isinstance(c, sdk.ChatCompletionChunk) for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello"
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == 7
    assert stream.response.is_closed and stub.chat_arrivals[0].body["stream"] is True


def test_stream_ending_before_done_raises():
    events = [sse(chunk(role="assistant", content="")), sse(chunk("par")), sse(chunk(finish="stop"))]
    with (
        StubServer([Reply(events=events), Reply(events=stream_events("never"))]) as stub,
        sdk.Client(base_url=stub.base_url) as client,
    ):
        got = []
        with pytest.raises(sdk.APIConnectionError) as info:
            for c in _ask(client, stream=True):
                got.append(c.choices[0].delta.content)
    assert got == ["", "par", None] and "[DONE]" in str(info.value.__cause__)
    assert len(stub.chat_arrivals) == 1  # a started stream is never retried


def test_stream_error_event_raises_api_error():
    err = {
        "error": {
            "message": "KV cache exhausted",
            "type": "server_error",
            "param": None,
            "code": "engine_dead",
        }
    }
    events = [sse(chunk(role="assistant", content="")), sse(err), sse("[DONE]")]
    with StubServer([Reply(events=events)]) as stub, sdk.Client(base_url=stub.base_url) as client:
        with pytest.raises(sdk.APIError) as info:
            list(_ask(client, stream=True))
    assert info.value.message == "KV cache exhausted" and info.value.code == "engine_dead"
    assert len(stub.chat_arrivals) == 1


@pytest.mark.asyncio
async def test_async_client_retry_after_and_done_check(sleeps):
    script = [Reply(status=503, body=ERR_503, headers={"retry-after": "2"}), Reply(body=completion("ok"))]
    with StubServer(script) as stub:
        async with sdk.AsyncClient(base_url=stub.base_url, api_key="sk-async") as client:
            out = await client.chat.completions.create(model="stub-model", messages=[sdk.user("hi")])
    assert out.choices[0].message.content == "ok" and sleeps == [2.0]
    assert stub.chat_arrivals[1].headers["authorization"] == "Bearer sk-async"

    with StubServer([Reply(events=[sse(chunk("a"))])]) as stub:
        async with sdk.AsyncClient(base_url=stub.base_url) as client:
            stream = await client.chat.completions.create(
                model="stub-model", messages=[sdk.user("x")], stream=True
            )
            with pytest.raises(sdk.APIConnectionError):
                async for _ in stream:
                    pass
    with StubServer([Reply(events=stream_events("x", "y"))]) as stub:
        async with sdk.AsyncClient(base_url=stub.base_url) as client:
            stream = await client.chat.completions.create(
                model="stub-model", messages=[sdk.user("x")], stream=True
            )
            assert "".join([c.choices[0].delta.content or "" async for c in stream if c.choices]) == "xy"
