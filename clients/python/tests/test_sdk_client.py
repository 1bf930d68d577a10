"""Client configuration and request bodies (an in-process httpx MockTransport records the requests)."""

from __future__ import annotations

import json

import httpx
import pytest

import llava_interleave_client as sdk
from llava_interleave_client._base_client import DEFAULT_BASE_URL

from sdk_stub_server import MODELS, completion

pytestmark = pytest.mark.unit


class Recorder:
    def __init__(self, body=None):
        self.requests: list[httpx.Request] = []
        self.body = body or completion("hi there")

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path.endswith("/models"):
            return httpx.Response(200, json=MODELS)
        return httpx.Response(200, json=self.body, headers={"x-request-id": "r1"})

    @property
    def last_json(self):
        return json.loads(self.requests[-1].content)


def _client(rec: Recorder, **kw) -> sdk.Client:
    return sdk.Client(http_client=httpx.Client(transport=httpx.MockTransport(rec)), **kw)


def test_defaults_and_env(monkeypatch):
    monkeypatch.delenv("INTERLEAVE_BASE_URL", raising=False)
    monkeypatch.delenv("INTERLEAVE_API_KEY", raising=False)
    c = sdk.Client()
    assert c.base_url == DEFAULT_BASE_URL == "http://127.0.0.1:8000/v1"
    assert c.api_key is None and c.max_retries == 2
    assert c.timeout.read == 600.0 and c.timeout.connect == 5.0
    c.close()

    monkeypatch.setenv("INTERLEAVE_BASE_URL", "http://127.0.0.1:8123/v1/")
    monkeypatch.setenv("INTERLEAVE_API_KEY", "sk-env")
    rec = Recorder()
    c = _client(rec)
    assert c.base_url == "http://127.0.0.1:8123/v1"
    c.models.list()
    req = rec.requests[-1]
    assert str(req.url) == "http://127.0.0.1:8123/v1/models"
    assert req.headers["authorization"] == "Bearer sk-env"

    rec = Recorder()
    c = _client(rec, base_url="http://127.0.0.1:9/v1", api_key="sk-arg", timeout=3.0)
    assert c.timeout.read == 3.0 and c.timeout.connect == 3.0
    c.models.list()
    assert rec.requests[-1].headers["authorization"] == "Bearer sk-arg"
    assert str(rec.requests[-1].url) == "http://127.0.0.1:9/v1/models"


def test_no_api_key_sends_no_authorization(monkeypatch):
    monkeypatch.delenv("INTERLEAVE_API_KEY", raising=False)
    rec = Recorder()
    _client(rec, base_url="http://127.0.0.1:9/v1").models.list()
    assert "authorization" not in rec.requests[-1].headers


def test_create_body_and_typed_result():
    rec = Recorder()
    c = _client(rec, base_url="http://127.0.0.1:9/v1")
    out = c.chat.completions.create(
        model="m",
        messages=[sdk.system("be brief"), sdk.user("hi", sdk.image("https://example.com/a.png"))],
        max_tokens=5, max_completion_tokens=6, temperature=0, top_p=0.9, n=1, seed=7, stop=["\n"],
        presence_penalty=0.1, frequency_penalty=0.2, logprobs=True, top_logprobs=2,
        image_placement="front", extra_body={"custom": 1}, extra_headers={"x-trace": "t"},
    )
    body = rec.last_json
    assert body == {
        "model": "m",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "hi"},
                                         {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]},
        ],
        "max_tokens": 5, "max_completion_tokens": 6, "temperature": 0, "top_p": 0.9, "n": 1, "seed": 7,
        "stop": ["\n"], "presence_penalty": 0.1, "frequency_penalty": 0.2, "logprobs": True, "top_logprobs": 2,
        "image_placement": "front", "custom": 1,
    }
    assert rec.requests[-1].headers["x-trace"] == "t"
    assert rec.requests[-1].headers["content-type"] == "application/json"
    assert isinstance(out, sdk.ChatCompletion)
    assert out.choices[0].message.content == "hi there"
    assert isinstance(out.usage, sdk.Usage) and out.usage.prompt_tokens == 735


def test_none_fields_are_omitted():
    rec = Recorder()
    _client(rec, base_url="http://127.0.0.1:9/v1").chat.completions.create(model="m", messages=[sdk.user("x")])
    assert rec.last_json == {"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]}]}


def test_models_list():
    rec = Recorder()
    models = _client(rec, base_url="http://127.0.0.1:9/v1").models.list()
    assert isinstance(models, sdk.ModelList)
    assert [m.id for m in models] == ["stub-model"] and models.data[0].owned_by == "stub"


def test_unknown_response_fields_are_kept():
    body = completion("x")
    body["choices"][0]["stop_reason"] = 151645
    rec = Recorder(body)
    out = _client(rec, base_url="http://127.0.0.1:9/v1").chat.completions.create(model="m", messages=[sdk.user("x")])
    assert out.choices[0].model_extra == {"stop_reason": 151645}


def test_with_options_shares_the_pool():
    rec = Recorder()
    c = _client(rec, base_url="http://127.0.0.1:9/v1", api_key="k")
    c2 = c.with_options(max_retries=0, timeout=1.5)
    assert c2.max_retries == 0 and c2.timeout.read == 1.5 and c2._http is c._http
    assert c2.api_key == "k" and c2.base_url == c.base_url
    c2.close()  # does not close the shared pool
    c.models.list()


def test_negative_max_retries_is_refused():
    with pytest.raises(ValueError):
        sdk.Client(max_retries=-1)


@pytest.mark.asyncio
async def test_async_client_body_and_result(monkeypatch):
    monkeypatch.setenv("INTERLEAVE_API_KEY", "sk-async")
    rec = Recorder()
    async with sdk.AsyncClient(base_url="http://127.0.0.1:9/v1",
                               http_client=httpx.AsyncClient(transport=httpx.MockTransport(rec))) as c:
        models = await c.models.list()
        out = await c.chat.completions.create(model=models.data[0].id, messages=[sdk.user("x")], seed=3)
    assert out.choices[0].message.content == "hi there"
    assert rec.last_json["seed"] == 3 and rec.last_json["model"] == "stub-model"
    assert rec.requests[-1].headers["authorization"] == "Bearer sk-async"
