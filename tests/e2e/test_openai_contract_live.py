"""The OpenAI contract on the live server (real vLLM engine, tiny random-weight model).

A random model emits valid JSON or valid tool calls only when decoding is really constrained, so the
structured-output and tool tests prove the wiring to vLLM's structured-output backends. Every body,
chunk and error is validated against OpenAI's published OpenAPI schemas (tests/openapi).
"""

from __future__ import annotations

import json

import jsonschema
import pytest

from harness.media import encode_video, png_url, video_url
from tests.openapi import validate, validate_sse

SCHEMA = {
    "type": "object",
    "properties": {
        "color": {"type": "string", "enum": ["red", "green", "blue"]},
        "ok": {"type": "boolean"},
        "size": {"type": "string", "enum": ["S", "M", "L"]},
    },
    "required": ["color", "ok", "size"],
    "additionalProperties": False,
}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather of a city",
        "parameters": {
            "type": "object",
            "properties": {"unit": {"type": "string", "enum": ["C", "F"]}, "days": {"type": "boolean"}},
            "required": ["unit", "days"],
            "additionalProperties": False,
        },
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {
            "type": "object",
            "properties": {"zone": {"type": "string", "enum": ["UTC", "CET"]}},
            "required": ["zone"],
            "additionalProperties": False,
        },
    },
}


def _image_msg(text: str = "Describe it as JSON.") -> list[dict]:
    return [
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": png_url(40, 30)}},
                {"type": "text", "text": text},
            ],
        }
    ]


def _video_msg() -> list[dict]:
    clip = video_url(encode_video(8, size=(64, 48)))
    return [
        {
            "role": "user",
            "content": [
                {"type": "video_url", "video_url": {"url": clip, "num_frames": 4}},
                {"type": "text", "text": "JSON please"},
            ],
        }
    ]


def _post(client, body: dict, path: str = "/v1/chat/completions"):
    r = client.post(path, json=body)
    if r.status_code == 200 and not body.get("stream"):
        validate(
            "CreateCompletionResponse" if path == "/v1/completions" else "CreateChatCompletionResponse",
            r.json(),
        )
    elif r.status_code != 200:
        validate("ErrorResponse", r.json())
    return r


def _stream_text(client, body: dict) -> tuple[str, list[dict]]:
    r = client.post("/v1/chat/completions", json={**body, "stream": True})
    assert r.status_code == 200, r.text
    chunks = validate_sse(r.text)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices"))
    return text, chunks


@pytest.mark.parametrize("media", ["image", "video"])
def test_json_schema_output_is_valid_with_media(client, media):
    messages = _image_msg() if media == "image" else _video_msg()
    rf = {"type": "json_schema", "json_schema": {"name": "thing", "schema": SCHEMA, "strict": True}}
    for seed in (1, 2):
        r = _post(
            client,
            {
                "messages": messages,
                "response_format": rf,
                "max_tokens": 120,
                "temperature": 1.0,
                "seed": seed,
            },
        )
        assert r.status_code == 200, r.text
        choice = r.json()["choices"][0]
        assert choice["finish_reason"] == "stop", choice
        jsonschema.validate(json.loads(choice["message"]["content"]), SCHEMA)
        assert r.json()["usage"]["prompt_tokens_details"]["image_tokens"] == 729 * (
            1 if media == "image" else 4
        )
    text, _ = _stream_text(
        client, {"messages": messages, "response_format": rf, "max_tokens": 120, "seed": 3}
    )
    jsonschema.validate(json.loads(text), SCHEMA)


def test_scene_views_with_json_object(client):
    scene = {
        "type": "scene_views",
        "scene_views": {
            "urls": [png_url(20, 20, (i * 40, 0, 0)) for i in range(3)],
            "labels": ["a", "b", "c"],
        },
    }
    r = _post(
        client,
        {
            "messages": [{"role": "user", "content": [scene, {"type": "text", "text": "json"}]}],
            "response_format": {"type": "json_object"},
            "max_tokens": 60,
            "seed": 4,
            "stop_token_ids": [],
        },
    )
    assert r.status_code == 200
    choice = r.json()["choices"][0]
    if choice["finish_reason"] == "stop":  # any JSON object can be long: only a finished one must parse
        assert isinstance(json.loads(choice["message"]["content"]), dict)


def test_vllm_structured_outputs_extension(client):
    r = _post(
        client, {"messages": _image_msg(), "structured_outputs": {"choice": ["cat", "dog"]}, "max_tokens": 8}
    )
    assert r.json()["choices"][0]["message"]["content"] in ("cat", "dog")
    r = _post(
        client,
        {"messages": _image_msg(), "structured_outputs": {"regex": "[0-9]{3}-[a-c]{2}"}, "max_tokens": 12},
    )
    import re

    assert re.fullmatch(r"[0-9]{3}-[a-c]{2}", r.json()["choices"][0]["message"]["content"])
    r = _post(
        client,
        {
            "messages": _image_msg(),
            "structured_outputs": {"grammar": 'root ::= "yes" | "no"'},
            "max_tokens": 8,
        },
    )
    assert r.json()["choices"][0]["message"]["content"] in ("yes", "no")
    r = _post(client, {"messages": _image_msg(), "structured_outputs": {"json": SCHEMA}, "max_tokens": 120})
    jsonschema.validate(json.loads(r.json()["choices"][0]["message"]["content"]), SCHEMA)


def test_invalid_schema_is_400_and_the_engine_lives(client):
    bad = {
        "type": "json_schema",
        "json_schema": {"name": "x", "schema": {"type": "object", "properties": {"a": {"type": 5}}}},
    }
    r = _post(client, {"messages": _image_msg(), "response_format": bad, "max_tokens": 4})
    assert r.status_code == 400 and r.json()["error"]["param"].startswith("response_format")
    r = _post(
        client, {"messages": _image_msg(), "structured_outputs": {"grammar": "root ::= ("}, "max_tokens": 4}
    )
    assert r.status_code == 400 and r.json()["error"]["param"] == "structured_outputs", r.json()
    assert client.get("/health").status_code == 200
    assert _post(client, {"messages": _image_msg(), "max_tokens": 2}).status_code == 200


def _check_calls(calls: list[dict], tools: list[dict]) -> None:
    by_name = {t["function"]["name"]: t["function"]["parameters"] for t in tools}
    assert calls
    for call in calls:
        assert call["type"] == "function" and call["id"]
        jsonschema.validate(json.loads(call["function"]["arguments"]), by_name[call["function"]["name"]])


@pytest.mark.parametrize("parallel", [True, False])
def test_required_tool_choice_gives_valid_calls(client, parallel):
    tools = [WEATHER, TIME]
    body = {
        "messages": _image_msg("What now?"),
        "tools": tools,
        "tool_choice": "required",
        "max_tokens": 400,
        "parallel_tool_calls": parallel,
        "seed": 5,
    }
    r = _post(client, body)
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "tool_calls", choice
    _check_calls(choice["message"]["tool_calls"], tools)
    if not parallel:
        assert len(choice["message"]["tool_calls"]) == 1
    _, chunks = _stream_text(client, body)
    calls = [
        tc for c in chunks if c.get("choices") for tc in c["choices"][0]["delta"].get("tool_calls") or []
    ]
    _check_calls(calls, tools)
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_named_tool_choice_gives_that_function(client):
    body = {
        "messages": _image_msg(),
        "tools": [WEATHER, TIME],
        "max_tokens": 80,
        "tool_choice": {"type": "function", "function": {"name": "get_time"}},
        "n": 2,
        "seed": 6,
    }
    r = _post(client, body)
    for choice in r.json()["choices"]:
        calls = choice["message"]["tool_calls"]
        assert [c["function"]["name"] for c in calls] == ["get_time"]
        _check_calls(calls, [TIME])


def test_tool_result_turn_is_accepted(client):
    messages = [
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"unit": "C", "days": false}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "21 C"},
    ]
    r = _post(client, {"messages": messages, "tools": [WEATHER], "max_tokens": 4})
    assert r.status_code == 200


def test_conformance_n2_logprobs_stream_usage_and_errors(client):
    r = _post(
        client, {"messages": _image_msg(), "max_tokens": 4, "n": 2, "logprobs": True, "top_logprobs": 2}
    )
    assert len(r.json()["choices"]) == 2 and r.json()["choices"][0]["logprobs"]["refusal"] is None
    _, chunks = _stream_text(
        client,
        {
            "messages": _image_msg(),
            "max_tokens": 4,
            "n": 2,
            "logprobs": True,
            "top_logprobs": 1,
            "stream_options": {"include_usage": True},
        },
    )
    assert chunks[-1]["usage"]["completion_tokens"] == 8
    assert _post(client, {"messages": _image_msg(), "max_tokens": "4"}).status_code == 400
    assert (
        _post(client, {"messages": _image_msg(), "audio": {"voice": "x"}}).json()["error"]["code"]
        == "unsupported_parameter"
    )
    validate("ListModelsResponse", client.get("/v1/models").json())


def test_completions_endpoint_conformance(client, model_name):
    r = _post(
        client,
        {"model": model_name, "prompt": "Once upon a time", "max_tokens": 5, "n": 2, "logprobs": 1},
        "/v1/completions",
    )
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 10
    r = client.post(
        "/v1/completions",
        json={"prompt": "Hi", "max_tokens": 5, "stream": True, "stream_options": {"include_usage": True}},
    )
    chunks = validate_sse(r.text, completions=True)
    assert chunks[-1]["usage"]["completion_tokens"] == 5


def test_tokenize_counts_visual_tokens_like_usage(client):
    messages = _image_msg()
    t = client.post("/tokenize", json={"messages": messages}).json()
    u = _post(client, {"messages": messages, "max_tokens": 1}).json()["usage"]
    assert t["count"] == u["prompt_tokens"] == len(t["tokens"])
    d = client.post(
        "/detokenize",
        json={"tokens": client.post("/tokenize", json={"prompt": "hello world"}).json()["tokens"]},
    ).json()
    assert d["prompt"] == "hello world"


# -- vLLM's sampling extras change the engine's behaviour ----------------------------------------


def _tok(client, text: str) -> int:
    ids = client.post("/tokenize", json={"prompt": text}).json()["tokens"]
    assert len(ids) == 1, ids
    return ids[0]


def _chat(client, **kw) -> dict:
    r = _post(client, {"messages": [{"role": "user", "content": "Tell me a story."}], **kw})
    assert r.status_code == 200, r.text
    return r.json()


def test_top_k_1_and_min_p_1_equal_greedy(client):
    greedy = _chat(client, max_tokens=12, temperature=0)["choices"][0]["message"]["content"]
    sampled = {
        _chat(client, max_tokens=12, temperature=1.5, seed=s)["choices"][0]["message"]["content"]
        for s in range(3)
    }
    assert sampled != {greedy}  # plain sampling does differ
    for s in range(3):
        assert (
            _chat(client, max_tokens=12, temperature=1.5, seed=s, top_k=1)["choices"][0]["message"]["content"]
            == greedy
        )
        assert (
            _chat(client, max_tokens=12, temperature=1.5, seed=s, min_p=1.0)["choices"][0]["message"][
                "content"
            ]
            == greedy
        )


def test_logit_bias_forces_a_token_and_allowed_and_bad_words(client):
    x = (
        _tok(client, "zebra")
        if len(client.post("/tokenize", json={"prompt": "zebra"}).json()["tokens"]) == 1
        else _tok(client, "a")
    )
    word = client.post("/detokenize", json={"tokens": [x]}).json()["prompt"]
    forced = _chat(client, max_tokens=5, temperature=0, logit_bias={str(x): 100})
    assert forced["choices"][0]["message"]["content"] == word * 5
    allowed = _chat(client, max_tokens=5, temperature=1.0, seed=1, allowed_token_ids=[x])
    assert allowed["choices"][0]["message"]["content"] == word * 5
    banned = _chat(
        client, max_tokens=5, temperature=0, logit_bias={str(x): 100}, bad_words=[word.strip() or word]
    )
    assert word not in banned["choices"][0]["message"]["content"]


def test_stop_token_ids_min_tokens_and_ignore_eos(client):
    x = _tok(client, "a")
    # a forced token that is also a stop token ends the choice at once ...
    stopped = _chat(client, max_tokens=10, temperature=0, logit_bias={str(x): 100}, stop_token_ids=[x])
    assert stopped["usage"]["completion_tokens"] == 1 and stopped["choices"][0]["finish_reason"] == "stop"
    # ... unless min_tokens holds stop tokens back
    held = _chat(
        client, max_tokens=10, temperature=0, logit_bias={str(x): 100}, stop_token_ids=[x], min_tokens=4
    )
    assert held["usage"]["completion_tokens"] >= 5 and held["choices"][0]["finish_reason"] == "stop"
    eos = 151645  # <|im_end|>
    ended = _chat(client, max_tokens=6, temperature=0, logit_bias={str(eos): 100})
    assert ended["usage"]["completion_tokens"] == 1 and ended["choices"][0]["finish_reason"] == "stop"
    ignored = _chat(client, max_tokens=6, temperature=0, logit_bias={str(eos): 100}, ignore_eos=True)
    assert ignored["usage"]["completion_tokens"] == 6 and ignored["choices"][0]["finish_reason"] == "length"
    kept = _chat(
        client,
        max_tokens=3,
        temperature=0,
        logit_bias={str(eos): 100},
        ignore_eos=True,
        skip_special_tokens=False,
    )
    assert "<|im_end|>" in kept["choices"][0]["message"]["content"]
    assert "<|im_end|>" not in ignored["choices"][0]["message"]["content"]


def test_include_stop_str_in_output(client):
    greedy = _chat(client, max_tokens=16, temperature=0)["choices"][0]["message"]["content"]
    stop = greedy[3:6]
    assert len(stop) == 3 and stop.strip()
    cut = greedy.index(stop)
    without = _chat(client, max_tokens=16, temperature=0, stop=[stop])["choices"][0]["message"]["content"]
    with_ = _chat(client, max_tokens=16, temperature=0, stop=[stop], include_stop_str_in_output=True)[
        "choices"
    ][0]["message"]["content"]
    assert without == greedy[:cut] and with_ == greedy[: cut + 3]


def test_repetition_penalty_changes_greedy(client):
    """Two tokens biased far above the rest (+100, +80): greedy repeats the first; with
    repetition_penalty 2 the first, once generated, is penalised ((l + 100) / 2) below the second."""
    prompt_ids = set(client.post("/tokenize", json={"prompt": "Tell me a story."}).json()["tokens"])
    x, y = [t for t in range(50000, 50100) if t not in prompt_ids][:2]
    wx, wy = (client.post("/detokenize", json={"tokens": [t]}).json()["prompt"] for t in (x, y))
    bias = {str(x): 100, str(y): 80}
    base = _chat(client, max_tokens=4, temperature=0, logit_bias=bias)["choices"][0]["message"]["content"]
    penal = _chat(client, max_tokens=4, temperature=0, logit_bias=bias, repetition_penalty=2.0)["choices"][0][
        "message"
    ]["content"]
    assert base == wx * 4
    assert penal.startswith(wx + wy) and penal != base


def test_prompt_logprobs_null_at_visual_positions(client):
    body = _chat(client, max_tokens=1, prompt_logprobs=1, messages=_image_msg())
    plp = body["prompt_logprobs"]
    assert len(plp) == body["usage"]["prompt_tokens"]
    assert plp[0] is None
    assert sum(1 for p in plp if p is None) == 1 + 729
    assert all(len(p) >= 1 for p in plp if p is not None)


def test_echo_continues_the_assistant_message(client):
    msgs = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Once"}]
    body = _post(client, {"messages": msgs, "max_tokens": 3, "echo": True}).json()
    assert body["choices"][0]["message"]["content"].startswith("Once")


def test_priority_needs_priority_scheduling(client):
    r = _post(client, {"messages": _image_msg(), "max_tokens": 1, "priority": 5})
    assert r.status_code == 400 and r.json()["error"]["param"] == "priority"
    assert _post(client, {"messages": _image_msg(), "max_tokens": 1, "priority": 0}).status_code == 200


def test_cache_salt_separates_prefix_cache_hits(client):
    """The same long prompt again hits vLLM's prefix cache (``cached_tokens`` > 0); with another
    ``cache_salt`` it cannot."""
    text = "The quick brown fox jumps over the lazy dog. " * 60
    body = {"messages": [{"role": "user", "content": text}], "max_tokens": 1, "temperature": 0}
    _post(client, {**body, "cache_salt": "salt-a"})
    again = _post(client, {**body, "cache_salt": "salt-a"}).json()["usage"]["prompt_tokens_details"][
        "cached_tokens"
    ]
    other = _post(client, {**body, "cache_salt": "salt-b"}).json()["usage"]["prompt_tokens_details"][
        "cached_tokens"
    ]
    assert again > 0
    assert other == 0


def test_request_id_names_the_response(client):
    body = _post(client, {"messages": _image_msg(), "max_tokens": 1, "request_id": "contract-test-1"}).json()
    assert body["id"] == "chatcmpl-contract-test-1"


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "string", "pattern": "(?<=a)b"},  # lookbehind: no regex engine of a grammar backend has it
        {"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}},  # dangling reference
        {"type": "array", "items": {"type": "integer"}, "minItems": 3, "maxItems": 1},  # unsatisfiable
        {"type": "string", "format": "email"},
    ],
)
def test_schemas_a_backend_may_refuse_never_hurt_the_engine(client, schema):
    rf = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    r = _post(client, {"messages": _image_msg(), "response_format": rf, "max_tokens": 8})
    assert r.status_code in (200, 400), r.text
    if r.status_code == 400:
        assert r.json()["error"]["param"].startswith("response_format")
    assert client.get("/health").status_code == 200
    assert _post(client, {"messages": _image_msg(), "max_tokens": 2}).status_code == 200
