"""The official ``openai`` client and raw SSE against the live server (real vLLM engine, tiny model)."""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest
from transformers import AutoTokenizer

from harness import media

TOKENS_PER_IMAGE = 729
NUM_FRAMES = 4
SYSTEM = "You are a helpful assistant."


@pytest.fixture(scope="module")
def oai(live_server) -> openai.OpenAI:
    return openai.OpenAI(base_url=live_server.v1, api_key="unused", max_retries=0, timeout=300)


@pytest.fixture(scope="module")
def tokenizer(live_server):
    return AutoTokenizer.from_pretrained(str(live_server.checkpoint))


@pytest.fixture(scope="module")
def mixed_parts() -> list[dict]:
    """Text, two images, a video (8 frames at 4 fps, H.264 by PyAV) and a 3-view scene, in that order."""
    return media.mixed_parts(NUM_FRAMES)


def expected_text_tokens(tokenizer, rendered: str) -> int:
    """Tokens of the documented rendering that are not image placeholders."""
    ids = tokenizer(rendered, add_special_tokens=False)["input_ids"]
    return len(ids) - ids.count(151646)


MIXED_RENDERED = (
    f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n"
    "Compare these.<image>\n<image>\n" + "<image>" * NUM_FRAMES + "\n"
    "front: <image>\nleft: <image>\nback: <image>\n<|im_end|>\n<|im_start|>assistant\n"
)


def test_ready_was_503_while_the_engine_loaded(live_server):
    assert live_server.ready_statuses[-1] == 200
    assert 503 in live_server.ready_statuses  # the HTTP server answers before the engine is up


def test_models_health_ready(client, model_name):
    models = client.get("/v1/models").json()
    assert models["object"] == "list" and models["data"][0]["object"] == "model"
    assert model_name == "llava-interleave-tiny-random"
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/ready").status_code == 200


def test_mixed_request_non_streaming(oai, model_name, mixed_parts, tokenizer, client):
    t0 = time.perf_counter()
    out = oai.chat.completions.create(
        model=model_name, messages=[{"role": "user", "content": mixed_parts}], max_tokens=8, temperature=0
    )
    latency = time.perf_counter() - t0
    print(f"\nmixed request (2 images + {NUM_FRAMES} frames + 3 views, 8 tokens): {latency:.2f} s")
    assert out.object == "chat.completion" and out.model == model_name
    assert out.choices[0].finish_reason in ("stop", "length")
    text_tokens = expected_text_tokens(tokenizer, MIXED_RENDERED)
    assert out.usage.prompt_tokens == text_tokens + TOKENS_PER_IMAGE * (2 + NUM_FRAMES + 3)
    assert 1 <= out.usage.completion_tokens <= 8
    assert out.usage.total_tokens == out.usage.prompt_tokens + out.usage.completion_tokens
    metrics = client.get("/metrics").text
    assert 'interleave_media_items_total{kind="video"}' in metrics
    assert 'interleave_media_items_total{kind="scene_view"}' in metrics


def test_mixed_request_streaming_equals_non_streaming(oai, model_name, mixed_parts):
    kw = dict(
        model=model_name,
        messages=[{"role": "user", "content": mixed_parts}],
        max_tokens=12,
        temperature=1.0,
        seed=123,
    )
    whole = oai.chat.completions.create(**kw)
    stream = oai.chat.completions.create(**kw, stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    joined = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert joined == whole.choices[0].message.content
    assert chunks[-1].choices == [] and chunks[-1].usage.prompt_tokens == whole.usage.prompt_tokens
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [whole.choices[0].finish_reason]


def _sse(client: httpx.Client, body: dict) -> list:
    events = []
    with client.stream("POST", "/v1/chat/completions", json=body) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers.get("x-request-id")
        buf = ""
        for piece in r.iter_text():
            buf += piece
            while "\n\n" in buf:
                block, buf = buf.split("\n\n", 1)
                assert block.startswith("data: "), block
                payload = block[6:]
                events.append(payload if payload == "[DONE]" else json.loads(payload))
    assert buf == ""
    return events


@pytest.mark.parametrize("include_usage", [False, True])
def test_chunk_sequence_follows_design(client, model_name, include_usage):
    body = {
        "model": model_name,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": media.png_url()}},
                    {"type": "text", "text": "Describe."},
                ],
            }
        ],
        "max_tokens": 6,
        "temperature": 0,
        "stream": True,
    }
    if include_usage:
        body["stream_options"] = {"include_usage": True}
    events = _sse(client, body)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert len({c["id"] for c in chunks}) == 1 and all(c["object"] == "chat.completion.chunk" for c in chunks)
    first = chunks[0]["choices"][0]
    assert first["delta"] == {"role": "assistant", "content": ""} and first["finish_reason"] is None
    if include_usage:
        usage_chunk = chunks[-1]
        assert usage_chunk["choices"] == []
        u = usage_chunk["usage"]
        assert (
            u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"]
            and u["prompt_tokens"] > TOKENS_PER_IMAGE
        )
        assert all(c["usage"] is None for c in chunks[:-1])
        content = chunks[1:-1]
    else:
        assert all("usage" not in c for c in chunks)
        content = chunks[1:]
    assert content, "no content chunk"
    reasons = [c["choices"][0]["finish_reason"] for c in content]
    assert reasons[:-1] == [None] * (len(reasons) - 1) and reasons[-1] in ("stop", "length")
    assert all(
        "content" in c["choices"][0]["delta"] and "role" not in c["choices"][0]["delta"] for c in content
    )
    non_stream = client.post(
        "/v1/chat/completions", json={**body, "stream": False, "stream_options": None}
    ).json()
    assert (
        "".join(c["choices"][0]["delta"]["content"] for c in content)
        == non_stream["choices"][0]["message"]["content"]
    )


def test_n_seed_stop_logprobs(oai, model_name):
    kw = dict(model=model_name, messages=[{"role": "user", "content": "Hello there"}])
    out = oai.chat.completions.create(
        **kw, max_tokens=6, n=2, temperature=1.0, seed=5, logprobs=True, top_logprobs=3
    )
    assert [c.index for c in out.choices] == [0, 1]
    for c in out.choices:
        lp = c.logprobs.content
        assert len(lp) >= 1 and all(len(t.top_logprobs) == 3 for t in lp)
        assert all(t.logprob <= 0 for t in lp)
    assert out.usage.completion_tokens == sum(len(c.logprobs.content) for c in out.choices)
    again = oai.chat.completions.create(**kw, max_tokens=6, n=2, temperature=1.0, seed=5)
    assert [c.message.content for c in again.choices] == [c.message.content for c in out.choices]
    greedy = oai.chat.completions.create(**kw, temperature=0, max_tokens=8)
    words = greedy.choices[0].message.content.split()
    if len(words) >= 3:
        stop_at = words[2]
        stopped = oai.chat.completions.create(**kw, temperature=0, max_tokens=8, stop=[stop_at])
        assert stop_at not in stopped.choices[0].message.content
        assert stopped.choices[0].finish_reason == "stop"
    assert greedy.choices[0].finish_reason in ("length", "stop")


def test_default_system_prompt_and_multi_turn(oai, model_name, tokenizer):
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": media.png_url()}},
                {"type": "text", "text": "What is it?"},
            ],
        },
        {"role": "assistant", "content": "A square."},
        {"role": "user", "content": "And now?"},
    ]
    out = oai.chat.completions.create(model=model_name, messages=messages, max_tokens=2, temperature=0)
    rendered = (
        f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n<image>\nWhat is it?<|im_end|>\n"
        "<|im_start|>assistant\nA square.<|im_end|>\n<|im_start|>user\nAnd now?<|im_end|>\n<|im_start|>assistant\n"
    )
    assert out.usage.prompt_tokens == expected_text_tokens(tokenizer, rendered) + TOKENS_PER_IMAGE


def test_literal_placeholder_text_never_binds(client, tokenizer):
    typed = "look: <image> <video> <|im_end|>"
    r = client.post(
        "/v1/chat/completions", json={"messages": [{"role": "user", "content": typed}], "max_tokens": 2}
    )
    assert r.status_code == 200, r.text
    plain = len(tokenizer(typed, add_special_tokens=False, split_special_tokens=True)["input_ids"])
    frame = expected_text_tokens(
        tokenizer,
        f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n<|im_end|>\n<|im_start|>assistant\n",
    )
    assert r.json()["usage"]["prompt_tokens"] == frame + plain  # no 729-token expansion anywhere


def test_request_id_header_and_error_format(client):
    r = client.get("/health", headers={"x-request-id": "e2e-abc"})
    assert r.headers["x-request-id"] == "e2e-abc"
    r = client.post(
        "/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}], "temperature": 3}
    )
    assert r.status_code == 400 and r.headers["x-request-id"]
    assert set(r.json()["error"]) == {"message", "type", "param", "code"}
    assert r.json()["error"]["param"] == "temperature"


def test_metrics_exposes_server_and_vllm_metrics(client):
    text = client.get("/metrics").text
    for name in (
        "interleave_requests_total",
        "interleave_request_duration_seconds_bucket",
        "interleave_time_to_first_token_seconds_bucket",
        "interleave_inter_token_latency_seconds_bucket",
        "interleave_prompt_tokens_total",
        "interleave_generation_tokens_total",
        "interleave_media_decode_seconds_bucket",
        "interleave_requests_in_flight",
        "vllm:num_requests_running",
        "vllm:prompt_tokens_total",
    ):
        assert name in text, name
