"""Inputs found by trying to break a live server: each is a clean 4xx and the server stays usable."""

from __future__ import annotations

import asyncio
import io
import threading

import numpy as np
import pytest
from PIL import Image
from server_fakes import running_app
from test_routes import URL, assert_error, body

from model_adapter.preprocess import resize_image
from server.media import MediaLimits, MediaLoader
from server.settings import ServerSettings

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "extra, param",
    [
        ({"stop": ""}, "stop"),
        ({"stop": ["ok", ""]}, "stop"),
        ({"seed": 2**64}, "seed"),
        ({"seed": -(2**63) - 1}, "seed"),
    ],
)
async def test_sampling_values_the_engine_cannot_take_are_400(extra, param):
    async with running_app() as h:
        assert_error(await h.client.post(URL, json=body(**extra)), 400, param=param)
        assert (await h.client.post(URL, json=body(seed=2**63 - 1))).status_code == 200


async def test_lone_surrogates_are_400_naming_the_field():
    async with running_app() as h:
        raw = b'{"messages":[{"role":"user","content":"\\ud800 x"}],"max_tokens":2}'
        r = await h.client.post(URL, content=raw, headers={"content-type": "application/json"})
        assert_error(r, 400, param="messages[0].content", contains="surrogate")
        raw = b'{"model":"\\udfff","messages":[{"role":"user","content":"x"}]}'
        r = await h.client.post(URL, content=raw, headers={"content-type": "application/json"})
        assert_error(r, 400, param="model")
        assert (await h.client.post(URL, json=body())).status_code == 200


async def test_deeply_nested_json_is_400():
    async with running_app() as h:
        raw = b'{"messages":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
        r = await h.client.post(URL, content=raw, headers={"content-type": "application/json"})
        assert_error(r, 400, contains="JSON")
        assert (await h.client.post(URL, json=body())).status_code == 200


async def test_text_that_cannot_fit_is_refused_without_tokenizing():
    async with running_app() as h:
        calls = []
        tokenizer = h.app.state.interleave.service.prompt_builder.tokenizer
        original = tokenizer.encode
        tokenizer.encode = lambda *a, **k: calls.append(1) or original(*a, **k)
        huge = "hello world " * 400_000  # 4.8 MB, far beyond the fake model's context
        err = assert_error(await h.client.post(URL, json=body(huge)), 400, param="messages")
        assert err["code"] == "context_length_exceeded"
        assert "at least" in err["message"]
        assert calls == []
        assert (await h.client.post(URL, json=body())).status_code == 200


async def test_tokenizing_runs_off_the_event_loop():
    """While a request's text is tokenized, /health answers."""
    async with running_app() as h:
        tokenizer = h.app.state.interleave.service.prompt_builder.tokenizer
        original = tokenizer.encode
        encoding, release = threading.Event(), threading.Event()

        def blocked_encode(*a, **k):  # tokenizing takes until the test says so
            encoding.set()
            release.wait(30)
            return original(*a, **k)

        tokenizer.encode = blocked_encode
        chat = asyncio.create_task(h.client.post(URL, json=body()))
        try:
            assert await asyncio.to_thread(encoding.wait, 30)
            health = await asyncio.wait_for(h.client.get("/health"), timeout=30)  # answered meanwhile
            assert health.status_code == 200
            assert not chat.done()
        finally:
            release.set()
        assert (await chat).status_code == 200


async def test_models_retrieve_and_503_retry_after_and_401_shape():
    async with running_app() as h:
        r = await h.client.get("/v1/models/fake-model")
        assert r.status_code == 200 and r.json()["id"] == "fake-model"
        assert_error(await h.client.get("/v1/models/other"), 404, param="model")
        h.app.state.interleave.phase = "draining"
        r = await h.client.post(URL, json=body())
        assert_error(r, 503)
        assert r.headers["retry-after"] == "1"
    async with running_app(ServerSettings(api_key="k")) as h:
        err = assert_error(await h.client.post(URL, json=body()), 401)
        assert (err["type"], err["code"]) == ("invalid_request_error", "invalid_api_key")


def _jpeg(width: int, height: int) -> str:
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8))
    buf = io.BytesIO()
    img.save(buf, format="JPEG")
    import base64

    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


async def test_media_loader_resizes_to_the_model_input_with_the_models_own_resize():
    url = _jpeg(1500, 1000)
    plain = MediaLoader(MediaLimits())
    sized = MediaLoader(MediaLimits(), resize_to=384)
    try:
        full = await plain.load_image(url)
        small = await sized.load_image(url)
    finally:
        await plain.aclose()
        await sized.aclose()
    assert full.size == (1500, 1000) and small.size == (384, 384)
    assert np.array_equal(np.asarray(small), resize_image(full, 384))


async def test_a_request_tokenizes_its_text_once():
    """The early budget check and the real build share the request's text tokenization."""
    async with running_app() as h:
        calls = []
        tokenizer = h.app.state.interleave.service.prompt_builder.tokenizer
        original = tokenizer.encode
        tokenizer.encode = lambda text, *a, **k: calls.append(text) or original(text, *a, **k)
        r = await h.client.post(URL, json=body("a question with some words"))
        assert r.status_code == 200
        assert len(calls) == len(set(calls))
        assert any("a question with some words" in c for c in calls)
