"""Unit tests of the HTTP layer on a fake engine (in-process ASGI with httpx; raw ASGI for disconnects)."""

from __future__ import annotations

import asyncio
import json

import pytest
from server_fakes import FakeEngine, png_data_url, running_app, sample_value

from server.settings import ServerSettings

pytestmark = pytest.mark.unit

URL = "/v1/chat/completions"


def body(content="hello", **kw):
    return {"messages": [{"role": "user", "content": content}], "max_tokens": 4, **kw}


def parse_sse(text: str) -> list:
    events = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        assert block.startswith("data: "), block
        payload = block[len("data: ") :]
        events.append(payload if payload == "[DONE]" else json.loads(payload))
    return events


def assert_error(resp, status, param=None, contains=None):
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    if param is not None:
        assert err["param"] == param
    if contains is not None:
        assert contains in err["message"], err["message"]
    return err


async def test_non_streaming_completion():
    async with running_app() as h:
        img = png_data_url()
        r = await h.client.post(
            URL, json=body([{"type": "image_url", "image_url": {"url": img}}, {"type": "text", "text": "hi"}])
        )
        assert r.status_code == 200, r.text
        data = r.json()
        assert data["object"] == "chat.completion" and data["id"].startswith("chatcmpl-")
        assert data["model"] == "fake-model"
        ch = data["choices"][0]
        assert ch["message"]["role"] == "assistant" and ch["finish_reason"] == "length"
        assert ch["logprobs"] is None
        call = h.engine.calls[0]
        assert len(call["images"]) == 1 and call["images"][0].mode == "RGB"
        assert data["usage"]["prompt_tokens"] == len(call["prompt_token_ids"]) - 1 + 729
        assert data["usage"]["completion_tokens"] == 4
        assert data["usage"]["total_tokens"] == data["usage"]["prompt_tokens"] + 4
        assert r.headers["x-request-id"]
        assert sample_value(h.metrics, "interleave_requests_total", {"endpoint": URL, "status": "200"}) == 1
        assert sample_value(h.metrics, "interleave_media_items_total", {"kind": "image"}) == 1
        assert sample_value(h.metrics, "interleave_generation_tokens_total") == 4
        assert sample_value(h.metrics, "interleave_time_to_first_token_seconds_count") == 1


async def test_sampling_options_passed_through():
    async with running_app() as h:
        r = await h.client.post(
            URL,
            json=body(
                max_tokens=7,
                temperature=0.5,
                top_p=0.9,
                seed=3,
                stop=["x"],
                n=2,
                presence_penalty=0.1,
                frequency_penalty=-0.2,
                logprobs=True,
                top_logprobs=2,
            ),
        )
        assert r.status_code == 200, r.text
        o = h.engine.calls[0]["options"]
        assert (o.max_tokens, o.temperature, o.top_p, o.seed, o.stop, o.n, o.logprobs) == (
            7,
            0.5,
            0.9,
            3,
            ("x",),
            2,
            2,
        )
        assert (o.presence_penalty, o.frequency_penalty) == (0.1, -0.2)
        data = r.json()
        assert [c["index"] for c in data["choices"]] == [0, 1]
        lp = data["choices"][0]["logprobs"]["content"]
        assert (
            len(lp) == 7
            and len(lp[0]["top_logprobs"]) == 2
            and lp[0]["bytes"] == list(lp[0]["token"].encode())
        )
        assert data["usage"]["completion_tokens"] == 14


async def test_default_max_tokens_is_what_is_left():
    async with running_app(ServerSettings(default_max_tokens=50), FakeEngine(max_model_len=1000)) as h:
        r = await h.client.post(URL, json={"messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 200
        prompt = r.json()["usage"]["prompt_tokens"]
        assert h.engine.calls[0]["options"].max_tokens == 50
        h.engine.calls.clear()
        r = await h.client.post(URL, json={"messages": [{"role": "user", "content": "hi " * 300}]})
        prompt = r.json()["usage"]["prompt_tokens"]
        assert h.engine.calls[0]["options"].max_tokens == 1000 - prompt


async def test_stream_chunk_sequence_with_and_without_usage():
    async with running_app() as h:
        plain = await h.client.post(URL, json=body(seed=1))
        for include_usage in (False, True):
            extra = {"stream_options": {"include_usage": True}} if include_usage else {}
            r = await h.client.post(URL, json=body(seed=1, stream=True, **extra))
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            assert r.headers["x-request-id"]
            ev = parse_sse(r.text)
            assert ev[-1] == "[DONE]"
            chunks = ev[:-1]
            assert all(c["object"] == "chat.completion.chunk" for c in chunks)
            assert len({c["id"] for c in chunks}) == 1
            assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
            if include_usage:
                last = chunks[-1]
                assert last["choices"] == [] and last["usage"]["completion_tokens"] == 4
                assert all("usage" in c and c["usage"] is None for c in chunks[:-1])
                content = chunks[1:-1]
            else:
                assert all("usage" not in c for c in chunks)
                content = chunks[1:]
            assert [c["choices"][0]["finish_reason"] for c in content] == [None] * (len(content) - 1) + [
                "length"
            ]
            text = "".join(c["choices"][0]["delta"].get("content") or "" for c in content)
            assert text == plain.json()["choices"][0]["message"]["content"]


async def test_stream_n2_and_stop():
    async with running_app(engine=FakeEngine(eos_after=3)) as h:
        r = await h.client.post(URL, json=body(n=2, stream=True, max_tokens=10))
        chunks = parse_sse(r.text)[:-1]
        roles = [c for c in chunks if c["choices"][0]["delta"].get("role")]
        assert sorted(c["choices"][0]["index"] for c in roles) == [0, 1]
        for i in (0, 1):
            mine = [c["choices"][0] for c in chunks[2:] if c["choices"][0]["index"] == i]
            assert mine[-1]["finish_reason"] == "stop"
            assert all(c["finish_reason"] is None for c in mine[:-1])


async def test_engine_failure_before_and_after_stream_start():
    engine = FakeEngine(fail_after_steps=0)
    async with running_app(engine=engine) as h:
        r = await h.client.post(URL, json=body())
        assert_error(r, 500)
        r = await h.client.post(URL, json=body(stream=True))
        assert_error(r, 500)
        engine.fail_after_steps = 2
        r = await h.client.post(URL, json=body(stream=True))
        assert r.status_code == 200
        ev = parse_sse(r.text)
        assert ev[-1] == "[DONE]" and "error" in ev[-2] and ev[-2]["error"]["type"] == "server_error"
        engine.fail_after_steps = None
        r = await h.client.post(URL, json=body())
        assert r.status_code == 200


async def test_engine_rejection_is_400():
    async with running_app(engine=FakeEngine(reject_with="prompt too long for the encoder cache")) as h:
        assert_error(await h.client.post(URL, json=body()), 400, contains="encoder cache")


@pytest.mark.parametrize(
    ("payload", "param"),
    [
        ({"messages": [{"role": "user", "content": "x"}], "temperature": 3}, "temperature"),
        ({"messages": [{"role": "user", "content": "x"}], "top_p": 0}, "top_p"),
        ({"messages": [{"role": "user", "content": "x"}], "n": 0}, "n"),
        ({"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}, "max_tokens"),
        ({"messages": [{"role": "user", "content": "x"}], "max_tokens": -1}, "max_tokens"),
        ({"messages": []}, "messages"),
        ({}, "messages"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": [{"type": "hologram"}]}]}, "messages[0].content[0]"),
    ],
)
async def test_validation_errors_are_400_with_param(payload, param):
    async with running_app() as h:
        assert_error(await h.client.post(URL, json=payload), 400, param=param)
        assert (await h.client.post(URL, json=body())).status_code == 200


async def test_non_json_body_and_wrong_model():
    async with running_app() as h:
        assert_error(
            await h.client.post(URL, content=b"{not json", headers={"content-type": "application/json"}),
            400,
            contains="JSON",
        )
        assert_error(
            await h.client.post(URL, content=b"\xff\xfe", headers={"content-type": "application/json"}), 400
        )
        assert_error(await h.client.post(URL, json=body(model="other")), 404, param="model")
        assert (await h.client.post(URL, json=body(model="fake-model"))).status_code == 200


async def test_media_errors_name_the_part():
    async with running_app() as h:
        bad = "data:image/png;base64," + "aGVsbG8gd29ybGQ="
        content = [
            {"type": "text", "text": "a"},
            {"type": "image_url", "image_url": {"url": png_data_url()}},
            {"type": "image_url", "image_url": {"url": bad}},
        ]
        assert_error(await h.client.post(URL, json=body(content)), 400, param="messages[0].content[2]")
        scene = {"type": "scene_views", "scene_views": {"urls": [png_data_url(), bad]}}
        assert_error(
            await h.client.post(URL, json=body([scene])),
            400,
            param="messages[0].content[0].scene_views.urls[1]",
        )
        video = {"type": "video_url", "video_url": {"url": "fake-video://bad"}}
        assert_error(await h.client.post(URL, json=body([video])), 400, param="messages[0].content[0]")
        assert h.engine.calls == []
        assert (await h.client.post(URL, json=body())).status_code == 200


async def test_mixed_media_usage_counts_every_visual_token():
    async with running_app() as h:
        content = [
            {"type": "text", "text": "look"},
            {"type": "image_url", "image_url": {"url": png_data_url()}},
            {"type": "image_url", "image_url": {"url": png_data_url(20, 300)}},
            {"type": "video_url", "video_url": {"url": "fake-video://3", "num_frames": 8}},
            {"type": "scene_views", "scene_views": {"urls": [png_data_url()] * 3, "labels": ["a", "b", "c"]}},
        ]
        r = await h.client.post(URL, json=body(content))
        assert r.status_code == 200, r.text
        ids = h.engine.calls[0]["prompt_token_ids"]
        n_visual = 2 + 3 + 3
        assert len(h.engine.calls[0]["images"]) == n_visual
        assert r.json()["usage"]["prompt_tokens"] == (len(ids) - n_visual) + 729 * n_visual
        assert sample_value(h.metrics, "interleave_media_items_total", {"kind": "scene_view"}) == 3
        assert sample_value(h.metrics, "interleave_media_items_total", {"kind": "video"}) == 1


async def test_token_budget_is_checked_before_media_loading():
    settings = ServerSettings(max_images_per_request=20)
    async with running_app(settings, FakeEngine(max_model_len=3000)) as h:
        content = [{"type": "image_url", "image_url": {"url": png_data_url()}}] * 5
        err = assert_error(await h.client.post(URL, json=body(content)), 400, contains="3000")
        assert err["code"] == "context_length_exceeded" and "3645" in err["message"]
        assert h.media.loaded == [] and h.engine.calls == []


async def test_too_many_images_names_limit():
    async with running_app(ServerSettings(max_images_per_request=2)) as h:
        content = [{"type": "image_url", "image_url": {"url": png_data_url()}}] * 3
        assert_error(
            await h.client.post(URL, json=body(content)),
            400,
            param="messages[0].content[2]",
            contains="at most 2",
        )


async def test_body_limit_413_before_parsing():
    async with running_app(ServerSettings(max_request_bytes=1000)) as h:
        big = b'{"messages": [' + b" " * 2000 + b"]}"
        r = await h.client.post(URL, content=big, headers={"content-type": "application/json"})
        assert_error(r, 413)
        assert r.headers["x-request-id"]

        async def chunks():  # no Content-Length: counted while streaming
            for _ in range(20):
                yield b" " * 100

        r = await h.client.post(URL, content=chunks(), headers={"content-type": "application/json"})
        assert_error(r, 413)
        assert (await h.client.post(URL, json=body())).status_code == 200


async def test_api_key():
    async with running_app(ServerSettings(api_key="sekret")) as h:
        assert_error(await h.client.post(URL, json=body()), 401)
        assert_error(await h.client.post(URL, json=body(), headers={"authorization": "Bearer nope"}), 401)
        assert_error(await h.client.get("/v1/models"), 401)
        ok = await h.client.post(URL, json=body(), headers={"authorization": "Bearer sekret"})
        assert ok.status_code == 200
        for path in ("/health", "/ready", "/metrics"):
            assert (await h.client.get(path)).status_code == 200


async def test_request_id_echo_and_generate():
    async with running_app() as h:
        r = await h.client.get("/health", headers={"x-request-id": "abc-123"})
        assert r.headers["x-request-id"] == "abc-123"
        r = await h.client.post(URL, json={"messages": []}, headers={"x-request-id": "req-9"})
        assert r.headers["x-request-id"] == "req-9"
        r1, r2 = await h.client.get("/nope"), await h.client.get("/ready")
        assert r1.status_code == 404 and r1.json()["error"]["type"] == "not_found_error"
        assert r1.headers["x-request-id"] != r2.headers["x-request-id"]


async def test_models_health_ready_metrics():
    async with running_app() as h:
        models = (await h.client.get("/v1/models")).json()
        assert models["object"] == "list" and models["data"][0]["id"] == "fake-model"
        assert (await h.client.get("/health")).json() == {"status": "ok"}
        assert (await h.client.get("/ready")).json()["status"] == "ready"
        await h.client.post(URL, json=body())
        text = (await h.client.get("/metrics")).text
        for name in (
            "interleave_requests_total",
            "interleave_request_duration_seconds_bucket",
            "interleave_time_to_first_token_seconds",
            "interleave_inter_token_latency_seconds",
            "interleave_prompt_tokens_total",
            "interleave_generation_tokens_total",
            "interleave_requests_in_flight",
            "interleave_media_decode_seconds",
        ):
            assert name in text, name
    assert h.engine.shut_down and h.media.closed


async def test_ready_503_while_loading_and_after_failure():
    release = asyncio.Event()
    loop = asyncio.get_running_loop()

    def slow_loader(settings):
        asyncio.run_coroutine_threadsafe(release.wait(), loop).result()
        from server_fakes import make_builder

        return FakeEngine(), make_builder()

    async with running_app(loader=slow_loader, wait_ready=False) as h:
        r = await h.client.get("/ready")
        assert r.status_code == 503 and r.json()["status"] == "loading"
        assert (await h.client.get("/health")).status_code == 200
        assert_error(await h.client.post(URL, json=body()), 503)
        release.set()
        for _ in range(200):
            if (await h.client.get("/ready")).status_code == 200:
                break
            await asyncio.sleep(0.01)
        assert (await h.client.get("/ready")).status_code == 200

    def broken_loader(settings):
        raise RuntimeError("no such checkpoint")

    async with running_app(loader=broken_loader) as h:
        assert (await h.client.get("/ready")).status_code == 503
        r = await h.client.get("/health")
        assert r.status_code == 503 and "no such checkpoint" in r.json()["error"]


async def test_draining():
    async with running_app(engine=FakeEngine(token_delay=0.01)) as h:
        state = h.app.state.interleave
        task = asyncio.create_task(h.client.post(URL, json=body(max_tokens=20)))
        for _ in range(100):
            if state.in_flight:
                break
            await asyncio.sleep(0.005)
        state.begin_drain()
        assert (await h.client.get("/ready")).status_code == 503
        assert_error(await h.client.post(URL, json=body()), 503)
        assert not await state.wait_idle(0.0)
        r = await task  # the in-flight request finishes normally
        assert r.status_code == 200 and r.json()["choices"][0]["finish_reason"] == "length"
        assert await state.wait_idle(1.0)


async def _raw_asgi_stream(app, payload: dict, *, disconnect_after_chunks: int):
    """Drive the ASGI app directly; report http.disconnect after N body chunks."""
    raw = json.dumps(payload).encode()
    sent: list[dict] = []
    got_chunks = asyncio.Event()
    body_given = False

    async def receive():
        nonlocal body_given
        if not body_given:
            body_given = True
            return {"type": "http.request", "body": raw, "more_body": False}
        await got_chunks.wait()
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)
        if (
            message["type"] == "http.response.body"
            and sum(1 for m in sent if m["type"] == "http.response.body") >= disconnect_after_chunks
        ):
            got_chunks.set()

    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": URL,
        "raw_path": URL.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())],
        "client": ("127.0.0.1", 1234),
        "server": ("127.0.0.1", 80),
        "state": {},
    }
    await asyncio.wait_for(app(scope, receive, send), timeout=10)
    return sent


async def test_stream_disconnect_aborts_engine_request():
    engine = FakeEngine(token_delay=0.02)
    async with running_app(engine=engine) as h:
        sent = await _raw_asgi_stream(h.app, body(stream=True, max_tokens=5000), disconnect_after_chunks=2)
        assert sent[0]["status"] == 200
        assert len(engine.aborted) == 1 and engine.aborted[0] == engine.calls[0]["request_id"]
        assert engine.active == set()
        assert h.app.state.interleave.in_flight == 0
        assert sample_value(h.metrics, "interleave_requests_in_flight") == 0
        assert (await h.client.post(URL, json=body())).status_code == 200


async def test_stream_disconnect_aborts_a_stream_whose_steps_are_always_ready():
    # An engine whose next step is ready at once (a fast model) is where a cancellation can arrive
    # just as a step completes; asyncio.wait_for on Python 3.11 dropped it there, and the stream of
    # a client that had gone ran on to max_tokens. Every disconnect must end the stream early.
    engine = FakeEngine(eos_after=100_000)
    async with running_app(engine=engine) as h:
        for attempt in range(20):
            sent = await _raw_asgi_stream(
                h.app, body(stream=True, max_tokens=5000), disconnect_after_chunks=2
            )
            chunks = sum(1 for m in sent if m["type"] == "http.response.body")
            assert chunks < 5000, f"attempt {attempt}: the stream ran to max_tokens after the disconnect"
            assert len(engine.aborted) == attempt + 1
            assert engine.active == set()
        assert h.app.state.interleave.in_flight == 0


async def test_non_stream_disconnect_aborts_engine_request():
    engine = FakeEngine(token_delay=0.02)
    async with running_app(engine=engine) as h:
        raw = json.dumps(body(max_tokens=5000)).encode()
        given = False

        async def receive():
            nonlocal given
            if not given:
                given = True
                return {"type": "http.request", "body": raw, "more_body": False}
            # The client goes away once the engine runs the request (bounded wait, no fixed sleep).
            deadline = asyncio.get_running_loop().time() + 10
            while not engine.active and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.005)
            return {"type": "http.disconnect"}

        sent = []

        async def send(m):
            sent.append(m)

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": URL,
            "raw_path": URL.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [],
            "client": None,
            "server": None,
            "state": {},
        }
        await asyncio.wait_for(h.app(scope, receive, send), timeout=10)
        assert engine.aborted and engine.active == set()
        assert sample_value(h.metrics, "interleave_requests_total", {"endpoint": URL, "status": "499"}) == 1
