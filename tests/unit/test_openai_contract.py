"""The OpenAI contract of the HTTP layer on a fake engine: every body, chunk and error validated
against OpenAI's published OpenAPI schemas (tests/openapi), every request field either honoured or a
400 ``unsupported_parameter``, tool calls in OpenAI's shape, and the sampling fields reaching the
engine's options."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest

from server.completions import UNSUPPORTED_COMPLETION_FIELDS, CompletionRequest
from server.schemas import UNSUPPORTED_CHAT_FIELDS, ChatCompletionRequest
from tests.openapi import SCHEMAS, validate, validate_sse
from tests.unit.server_fakes import IMAGE, FakeEngine, make_builder, png_data_url, running_app

USER = [{"role": "user", "content": "hi"}]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@dataclass
class ScriptedEngine(FakeEngine):
    """Emits ``script`` word by word (one word per token), then stops."""

    script: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.eos_after = len(self.script)

    def word(self, prompt, seed, choice, k):
        return self.script[k] if k < len(self.script) else ""


def _props(name: str) -> set[str]:
    schema = SCHEMAS[name]
    out: set[str] = set()
    for part in schema.get("allOf", [schema]):
        if "$ref" in part:
            out |= _props(part["$ref"].rsplit("/", 1)[-1])
        out |= set(part.get("properties", {}))
    return out


def _vllm_fields(cls_path: str) -> set[str]:
    module, name = cls_path.rsplit(".", 1)
    import importlib

    return set(getattr(importlib.import_module(module), name).model_fields)


# Fields that need no handling: identifiers with no effect on the output.
IDENTIFIERS = {"user", "safety_identifier", "prompt_cache_key", "session_id", "request_id", "model"}


def test_every_openai_and_vllm_chat_field_is_handled():
    handled = set(ChatCompletionRequest.model_fields) | set(UNSUPPORTED_CHAT_FIELDS)
    openai_fields = _props("CreateChatCompletionRequest")
    assert openai_fields - handled == set()
    vllm_fields = _vllm_fields("vllm.entrypoints.openai.chat_completion.protocol.ChatCompletionRequest")
    assert vllm_fields - handled == set()


def test_every_openai_and_vllm_completion_field_is_handled():
    handled = (
        set(CompletionRequest.model_fields)
        | set(UNSUPPORTED_COMPLETION_FIELDS)
        | set(UNSUPPORTED_CHAT_FIELDS)
    )
    assert _props("CreateCompletionRequest") - handled == set()
    vllm_fields = _vllm_fields("vllm.entrypoints.openai.completion.protocol.CompletionRequest")
    assert vllm_fields - handled == set()


async def _post(h, body, path="/v1/chat/completions"):
    return await h.client.post(path, json=body)


@pytest.mark.parametrize(
    "field,value",
    [
        ("audio", {"voice": "alloy", "format": "wav"}),
        ("modalities", ["text", "audio"]),
        ("prediction", {"type": "content", "content": "x"}),
        ("web_search_options", {}),
        ("store", True),
        ("reasoning_effort", "low"),
        ("functions", [{"name": "f"}]),
        ("use_beam_search", True),
        ("chat_template", "{{x}}"),
        ("truncate_prompt_tokens", 5),
        ("continue_final_message", True),
        ("vllm_xargs", {"a": 1}),
    ],
)
async def test_unsupported_fields_are_400_naming_them(field, value):
    async with running_app() as h:
        r = await _post(h, {"messages": USER, field: value})
        assert r.status_code == 400, r.text
        validate("ErrorResponse", r.json())
        assert r.json()["error"]["param"] == field
        assert r.json()["error"]["code"] == "unsupported_parameter"


async def test_defaults_of_unsupported_fields_and_unknown_fields_are_fine():
    async with running_app() as h:
        r = await _post(
            h,
            {
                "messages": USER,
                "max_tokens": 2,
                "store": False,
                "use_beam_search": False,
                "modalities": ["text"],
                "add_generation_prompt": True,
                "some_future_field": {"x": 1},
            },
        )
        assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    "body,param",
    [
        ({"max_tokens": "10"}, "max_tokens"),
        ({"temperature": "0.5"}, "temperature"),
        ({"stream": 1}, "stream"),
        ({"n": 1.0}, "n"),
        ({"top_k": -2}, "top_k"),
        ({"min_p": 1.5}, "min_p"),
        ({"repetition_penalty": 0}, "repetition_penalty"),
        ({"logit_bias": {"abc": 1}}, "logit_bias"),
        ({"logit_bias": {"5": 101}}, "logit_bias.5"),
        ({"min_tokens": 5, "max_tokens": 2}, "min_tokens"),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "x", "schema": {"type": "nope"}},
                }
            },
            "response_format.json_schema.schema",
        ),
        ({"response_format": {"type": "xml"}}, "response_format"),
        ({"structured_outputs": {"regex": "("}}, "structured_outputs"),
        ({"structured_outputs": {"regex": "a", "choice": ["a"]}}, "structured_outputs"),
        (
            {"structured_outputs": {"json": {"type": "object"}, "whitespace_pattern": " "}},
            "structured_outputs.whitespace_pattern",
        ),
        ({"tool_choice": "required"}, "tool_choice"),
        (
            {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
            "tool_choice",
        ),
        ({"tools": []}, "tools"),
        ({"prompt_logprobs": 1, "stream": True}, "prompt_logprobs"),
    ],
)
async def test_strict_types_and_ranges(body, param):
    async with running_app() as h:
        r = await _post(h, {"messages": USER, **body})
        assert r.status_code == 400, r.text
        validate("ErrorResponse", r.json())
        assert r.json()["error"]["param"] == param, r.json()


async def test_nonstream_n2_logprobs_validates_and_has_openai_nulls():
    async with running_app() as h:
        r = await _post(h, {"messages": USER, "max_tokens": 3, "n": 2, "logprobs": True, "top_logprobs": 2})
        assert r.status_code == 200
        body = r.json()
        validate("CreateChatCompletionResponse", body)
        assert isinstance(body["system_fingerprint"], str)
        for c in body["choices"]:
            assert c["message"]["refusal"] is None
            assert c["logprobs"]["refusal"] is None
            assert len(c["logprobs"]["content"]) == 3
        assert body["usage"]["completion_tokens"] == 6


async def test_stream_n2_logprobs_usage_validates():
    async with running_app() as h:
        r = await _post(
            h,
            {
                "messages": USER,
                "max_tokens": 3,
                "n": 2,
                "logprobs": True,
                "top_logprobs": 1,
                "stream": True,
                "stream_options": {"include_usage": True},
            },
        )
        chunks = validate_sse(r.text)
        assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 6
        assert all("usage" in c for c in chunks)
        finals = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
        assert sorted(c["choices"][0]["index"] for c in finals) == [0, 1]


def _matches(grammar: str, text: str) -> bool:
    import xgrammar

    compiled = xgrammar.GrammarCompiler(xgrammar.TokenizerInfo([])).compile_grammar(
        xgrammar.Grammar.from_ebnf(grammar)
    )
    matcher = xgrammar.GrammarMatcher(compiled, terminate_without_stop_token=True)
    return matcher.accept_string(text) and matcher.is_terminated()


def _assert_grammar_accepts(grammar: str, text: str) -> None:
    assert _matches(grammar, text), text


def _assert_grammar_rejects(grammar: str, text: str) -> None:
    assert not _matches(grammar, text), text


def _tool_script():
    return [
        "Sure. ",
        "<tool_call>",
        '\n{"name": "get_weather", ',
        '"arguments": {"city": ',
        '"Paris"}}',
        "\n</tool_call>",
    ]


async def test_auto_tool_call_parsed_by_hermes_parser():
    engine = ScriptedEngine(script=_tool_script())
    async with running_app(engine=engine) as h:
        r = await _post(h, {"messages": USER, "tools": [WEATHER], "max_tokens": 20})
        body = r.json()
        validate("CreateChatCompletionResponse", body)
        choice = body["choices"][0]
        assert choice["finish_reason"] == "tool_calls"
        call = choice["message"]["tool_calls"][0]
        assert call["function"]["name"] == "get_weather"
        assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}
        assert choice["message"]["content"] == "Sure. "
        # the tools are in the system prompt, in Qwen's format
        prompt = make_builder().tokenizer.decode(engine.calls[0]["prompt_token_ids"])
        assert "<tools>\n" + json.dumps(WEATHER) + "\n</tools>" in prompt


async def test_auto_tool_call_streamed_as_openai_deltas():
    engine = ScriptedEngine(script=_tool_script())
    async with running_app(engine=engine) as h:
        r = await _post(h, {"messages": USER, "tools": [WEATHER], "max_tokens": 20, "stream": True})
        chunks = validate_sse(r.text)
        content = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
        deltas = [
            tc for c in chunks if c["choices"] for tc in c["choices"][0]["delta"].get("tool_calls") or []
        ]
        assert content == "Sure. "
        assert deltas[0]["id"] and deltas[0]["function"]["name"] == "get_weather"
        args = "".join(d.get("function", {}).get("arguments", "") for d in deltas)
        assert json.loads(args) == {"city": "Paris"}
        assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


async def test_required_tool_call_is_constrained_and_parsed():
    script = ['[{"name": "get_weather", ', '"parameters": {"city": "Rome"}}]']
    for stream in (False, True):
        engine = ScriptedEngine(script=script)
        async with running_app(engine=engine) as h:
            r = await _post(
                h,
                {
                    "messages": USER,
                    "tools": [WEATHER],
                    "tool_choice": "required",
                    "max_tokens": 20,
                    "stream": stream,
                },
            )
            so = engine.calls[0]["options"].structured
            assert so.kind == "grammar" and so.param == "tool_choice"
            _assert_grammar_accepts(so.value, '[{"name":"get_weather","parameters":{"city":"Rome"}}]')
            _assert_grammar_rejects(
                so.value, '[{"name": "get_weather","parameters":{"city":"Rome"}}]'
            )  # compact
            _assert_grammar_rejects(so.value, '[{"name":"nope","parameters":{"city":"Rome"}}]')
            if stream:
                chunks = validate_sse(r.text)
                calls = [
                    tc
                    for c in chunks
                    if c["choices"]
                    for tc in c["choices"][0]["delta"].get("tool_calls") or []
                ]
                finish = chunks[-1]["choices"][0]["finish_reason"]
            else:
                validate("CreateChatCompletionResponse", r.json())
                calls = r.json()["choices"][0]["message"]["tool_calls"]
                finish = r.json()["choices"][0]["finish_reason"]
            assert finish == "tool_calls"
            assert calls[0]["function"]["name"] == "get_weather"
            assert json.loads(calls[0]["function"]["arguments"]) == {"city": "Rome"}


async def test_named_tool_choice_constrains_to_the_parameters():
    engine = ScriptedEngine(script=['{"city": ', '"Oslo"}'])
    async with running_app(engine=engine) as h:
        r = await _post(
            h,
            {
                "messages": USER,
                "tools": [WEATHER],
                "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
            },
        )
        validate("CreateChatCompletionResponse", r.json())
        so = engine.calls[0]["options"].structured
        _assert_grammar_accepts(so.value, '{"city":"Oslo"}')
        _assert_grammar_rejects(so.value, '{"town":"Oslo"}')
        call = r.json()["choices"][0]["message"]["tool_calls"][0]
        assert json.loads(call["function"]["arguments"]) == {"city": "Oslo"}
        assert r.json()["choices"][0]["finish_reason"] == "stop"


async def test_tool_turns_render_as_qwen_chatml():
    engine = ScriptedEngine(script=["ok"])
    messages = [
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_2", "content": "warm"},
    ]
    async with running_app(engine=engine) as h:
        r = await _post(h, {"messages": messages, "tools": [WEATHER]})
        assert r.status_code == 200, r.text
        prompt = make_builder().tokenizer.decode(engine.calls[0]["prompt_token_ids"])
        assert (
            '<|im_start|>assistant\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>\n'
            "<|im_start|>user\n<tool_response>\nsunny\n</tool_response>\n<tool_response>\nwarm\n</tool_response><|im_end|>\n"
            "<|im_start|>assistant\n"
        ) in prompt


async def test_tool_message_needs_tool_call_id():
    async with running_app() as h:
        r = await _post(h, {"messages": [{"role": "tool", "content": "x"}]})
        assert r.status_code == 400 and r.json()["error"]["param"] == "messages[0]"


async def test_sampling_fields_reach_the_engine():
    engine = FakeEngine()
    async with running_app(engine=engine) as h:
        r = await _post(
            h,
            {
                "messages": USER,
                "max_tokens": 4,
                "top_k": 5,
                "min_p": 0.1,
                "repetition_penalty": 1.2,
                "min_tokens": 2,
                "ignore_eos": True,
                "stop_token_ids": [7],
                "include_stop_str_in_output": True,
                "skip_special_tokens": False,
                "logit_bias": {"12": 5.5},
                "allowed_token_ids": [1, 2],
                "bad_words": ["x"],
                "cache_salt": "s",
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "o", "schema": {"type": "object"}},
                },
            },
        )
        assert r.status_code == 200, r.text
        o = engine.calls[0]["options"]
        assert (o.top_k, o.min_p, o.repetition_penalty, o.min_tokens, o.ignore_eos) == (5, 0.1, 1.2, 2, True)
        assert o.stop_token_ids == (7,) and o.include_stop_str_in_output and not o.skip_special_tokens
        assert o.logit_bias == ((12, 5.5),) and o.allowed_token_ids == (1, 2) and o.bad_words == ("x",)
        assert o.cache_salt == "s"
        assert o.structured.kind == "json" and o.structured.param == "response_format.json_schema.schema"


async def test_structured_outputs_extension_and_json_object():
    engine = FakeEngine()
    async with running_app(engine=engine) as h:
        for so, kind in (
            ({"choice": ["a", "b"]}, "choice"),
            ({"regex": "[ab]+"}, "regex"),
            ({"grammar": 'root ::= "a"'}, "grammar"),
            ({"json": {"type": "object"}}, "json"),
            ({"json": {"type": "object"}, "disable_any_whitespace": True}, "grammar"),
        ):
            r = await _post(h, {"messages": USER, "max_tokens": 2, "structured_outputs": so})
            assert r.status_code == 200, r.text
            assert engine.calls[-1]["options"].structured.kind == kind
        r = await _post(h, {"messages": USER, "max_tokens": 2, "response_format": {"type": "json_object"}})
        assert engine.calls[-1]["options"].structured.kind == "json_object"
        r = await _post(h, {"messages": USER, "max_tokens": 2, "response_format": {"type": "text"}})
        assert engine.calls[-1]["options"].structured is None


async def test_echo_prepends_the_last_assistant_message():
    async with running_app() as h:
        msgs = USER + [{"role": "assistant", "content": "Once upon"}]
        r = await _post(h, {"messages": msgs, "max_tokens": 2, "echo": True})
        assert r.json()["choices"][0]["message"]["content"].startswith("Once upon")


async def test_request_id_names_the_response():
    async with running_app() as h:
        r = await _post(h, {"messages": USER, "max_tokens": 1, "request_id": "abc-1"})
        assert r.json()["id"] == "chatcmpl-abc-1"


async def test_models_validate():
    async with running_app() as h:
        body = (await h.client.get("/v1/models")).json()
        validate("ListModelsResponse", body)
        validate("Model", (await h.client.get(f"/v1/models/{body['data'][0]['id']}")).json())
        validate("ErrorResponse", (await h.client.get("/v1/models/nope")).json())


async def test_completions_validate_stream_and_not():
    async with running_app() as h:
        r = await _post(h, {"prompt": "Hello", "max_tokens": 3, "n": 2, "logprobs": 2}, "/v1/completions")
        assert r.status_code == 200, r.text
        validate("CreateCompletionResponse", r.json())
        assert r.json()["object"] == "text_completion" and len(r.json()["choices"]) == 2
        assert len(r.json()["choices"][0]["logprobs"]["tokens"]) == 3
        r = await _post(
            h,
            {"prompt": "Hello", "max_tokens": 3, "stream": True, "stream_options": {"include_usage": True}},
            "/v1/completions",
        )
        chunks = validate_sse(r.text, completions=True)
        assert chunks[-1]["usage"]["completion_tokens"] == 3
        r = await _post(h, {"prompt": [20, 21, 22], "max_tokens": 1, "echo": True}, "/v1/completions")
        assert r.status_code == 200
        r = await _post(h, {"prompt": ["a", "b"]}, "/v1/completions")
        assert r.status_code == 400 and r.json()["error"]["param"] == "prompt"
        validate("ErrorResponse", r.json())
        r = await _post(h, {"prompt": "x", "suffix": "y"}, "/v1/completions")
        assert r.json()["error"]["code"] == "unsupported_parameter"
        r = await _post(h, {"prompt": "x", "max_tokens": "3"}, "/v1/completions")
        assert r.status_code == 400 and r.json()["error"]["param"] == "max_tokens"
        r = await _post(h, {"prompt": "<image>"}, "/v1/completions")
        assert r.status_code == 400 and r.json()["error"]["param"] == "prompt"


async def test_tokenize_counts_729_per_image_without_decoding():
    async with running_app() as h:
        msgs = [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "a"},
                    {"type": "image_url", "image_url": {"url": png_data_url()}},
                    {
                        "type": "scene_views",
                        "scene_views": {
                            "urls": ["data:image/png;base64,broken", "data:image/png;base64,broken"]
                        },
                    },
                ],
            }
        ]
        r = await _post(h, {"messages": msgs}, "/tokenize")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["tokens"].count(IMAGE) == 3 * 729 and body["count"] == len(body["tokens"])
        assert h.media.loaded == []  # nothing fetched or decoded
        chat = await _post(
            h,
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "a"},
                            {"type": "image_url", "image_url": {"url": png_data_url()}},
                        ],
                    }
                ],
                "max_tokens": 1,
            },
        )
        one = await _post(
            h,
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "a"},
                            {"type": "image_url", "image_url": {"url": png_data_url()}},
                        ],
                    }
                ]
            },
            "/tokenize",
        )
        assert one.json()["count"] == chat.json()["usage"]["prompt_tokens"]
        r = await _post(h, {"prompt": "abc", "return_token_strs": True}, "/tokenize")
        assert r.json()["count"] == 3 and len(r.json()["token_strs"]) == 3
        d = await _post(h, {"tokens": r.json()["tokens"]}, "/detokenize")
        assert d.json() == {"prompt": "abc"}
