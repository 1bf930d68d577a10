"""Request and response models of ``POST /v1/chat/completions`` (OpenAI's schema plus our parts).

Requests are validated with :func:`parse_chat_request`, which turns any pydantic error into an HTTP 400
:class:`~server.errors.APIError` whose ``param`` names the field (``temperature``,
``messages[0].content[1].video_url.num_frames``), never FastAPI's 422.

Content parts (any order, any user message, across turns):

- ``{"type": "text", "text": ...}``
- ``{"type": "image_url", "image_url": {"url": ...}}``
- ``{"type": "video_url", "video_url": {"url": ..., "num_frames": 16, "fps": null}}``
- ``{"type": "scene_views", "scene_views": {"urls": [...], "labels": [...]}}``
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from server.errors import APIError, format_loc, invalid_request

# ------------------------------------------------------------------------------------------------
# Request
# ------------------------------------------------------------------------------------------------


class _Lenient(BaseModel):
    """Unknown fields are ignored, as OpenAI-compatible servers do for forward compatibility.

    Types are strict as OpenAI's are: ``"max_tokens": "10"`` or ``"stream": 1`` is a 400 (an integer is
    still accepted where a number is expected)."""

    model_config = ConfigDict(extra="ignore", strict=True)


class TextPart(_Lenient):
    type: Literal["text"]
    text: str


class ImageURL(_Lenient):
    url: str = Field(min_length=1)
    detail: Literal["auto", "low", "high"] | None = None


class ImageURLPart(_Lenient):
    type: Literal["image_url"]
    image_url: ImageURL

    @field_validator("image_url", mode="before")
    @classmethod
    def _bare_url(cls, v: Any) -> Any:
        return {"url": v} if isinstance(v, str) else v


class VideoURL(_Lenient):
    url: str = Field(min_length=1)
    # Range (1 .. --max-frames-per-request) checked once, with the server's limit: server.prompt.plan_media.
    num_frames: int | None = Field(None, description="Frames to sample uniformly; server default 16.")
    fps: float | None = Field(None, gt=0, description="Sample at this rate instead (capped by num_frames).")


class VideoURLPart(_Lenient):
    type: Literal["video_url"]
    video_url: VideoURL

    @field_validator("video_url", mode="before")
    @classmethod
    def _bare_url(cls, v: Any) -> Any:
        return {"url": v} if isinstance(v, str) else v


class SceneViews(_Lenient):
    urls: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1)
    labels: list[str] | None = None

    @model_validator(mode="after")
    def _labels_match(self) -> SceneViews:
        if self.labels is not None and len(self.labels) != len(self.urls):
            raise ValueError(
                f"labels has {len(self.labels)} entries but urls has {len(self.urls)}; give one label per view"
            )
        return self


class SceneViewsPart(_Lenient):
    type: Literal["scene_views"]
    scene_views: SceneViews


ContentPart = Annotated[TextPart | ImageURLPart | VideoURLPart | SceneViewsPart, Field(discriminator="type")]
PART_TYPES = ("text", "image_url", "video_url", "scene_views")
UNSUPPORTED_PART_TYPES = ("input_audio", "audio_url", "file", "image_embeds", "audio_embeds", "image_pil")
"""Content part types OpenAI or vLLM define that this model cannot take: 400 ``unsupported_parameter``."""

_FUNCTION_NAME = r"^[a-zA-Z0-9_-]{1,64}$"


class FunctionCall(_Lenient):
    """``{"name", "arguments"}`` of a tool call; ``arguments`` is JSON text, as OpenAI sends it."""

    name: str = Field(min_length=1)
    arguments: str


class ToolCall(_Lenient):
    """A tool call of an earlier assistant message (``messages[i].tool_calls[k]``)."""

    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(_Lenient):
    """One message. ``tool`` messages answer the assistant's ``tool_calls`` by ``tool_call_id``."""

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: list[ContentPart]
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    refusal: str | None = None

    @field_validator("content", mode="before")
    @classmethod
    def _normalize_content(cls, v: Any) -> Any:
        if v is None:
            return []
        if isinstance(v, str):
            return [{"type": "text", "text": v}]
        if not isinstance(v, list):
            raise ValueError("content must be a string or a list of content parts")
        # OpenAI's assistant "refusal" parts are text the assistant said.
        return [
            {"type": "text", "text": p.get("refusal", "")}
            if isinstance(p, dict) and p.get("type") == "refusal"
            else p
            for p in v
        ]

    @model_validator(mode="after")
    def _role_fields(self) -> ChatMessage:
        if self.tool_calls is not None and self.role != "assistant":
            raise ValueError("tool_calls is only allowed in assistant messages")
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a tool message needs the tool_call_id of the call it answers")
        return self


class StreamOptions(_Lenient):
    include_usage: bool = False
    continuous_usage_stats: bool = False
    include_obfuscation: bool = False


class JSONSchemaFormat(_Lenient):
    """``response_format.json_schema``: OpenAI's structured outputs."""

    name: str = Field(pattern=_FUNCTION_NAME)
    description: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None

    model_config = ConfigDict(extra="ignore", strict=True, populate_by_name=True)

    @field_validator("schema_")
    @classmethod
    def _valid_schema(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        if v is not None:
            check_json_schema(v)
        return v


class ResponseFormatText(_Lenient):
    type: Literal["text"]


class ResponseFormatJSONObject(_Lenient):
    type: Literal["json_object"]


class ResponseFormatJSONSchema(_Lenient):
    type: Literal["json_schema"]
    json_schema: JSONSchemaFormat


ResponseFormat = Annotated[
    ResponseFormatText | ResponseFormatJSONObject | ResponseFormatJSONSchema, Field(discriminator="type")
]


class StructuredOutputs(_Lenient):
    """vLLM's ``structured_outputs`` request extension (one constraint of json / regex / choice /
    grammar / json_object, plus its whitespace options), passed to vLLM's ``StructuredOutputsParams``."""

    json_: dict[str, Any] | str | None = Field(None, alias="json")
    regex: str | None = Field(None, min_length=1)
    choice: list[str] | None = Field(None, min_length=1)
    grammar: str | None = Field(None, min_length=1)
    json_object: bool | None = None
    disable_any_whitespace: bool = False
    disable_additional_properties: bool = False
    whitespace_pattern: str | None = None

    model_config = ConfigDict(extra="ignore", strict=True, populate_by_name=True)

    @model_validator(mode="after")
    def _one_constraint(self) -> StructuredOutputs:
        given = [
            k
            for k, v in (
                ("json", self.json_),
                ("regex", self.regex),
                ("choice", self.choice),
                ("grammar", self.grammar),
                ("json_object", self.json_object),
            )
            if v is not None
        ]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of json, regex, choice, grammar, json_object"
                + (f" (got {', '.join(given)})" if given else "")
            )
        if isinstance(self.json_, str):
            try:
                parsed = json.loads(self.json_)
            except ValueError as exc:
                raise ValueError(f"json is not valid JSON text: {exc}") from None
            if not isinstance(parsed, dict):
                raise ValueError("json must be a JSON schema object")
            self.json_ = parsed
        if isinstance(self.json_, dict):
            check_json_schema(self.json_)
        if self.regex is not None:
            try:
                re.compile(self.regex)
            except re.error as exc:
                raise ValueError(f"regex does not compile: {exc}") from None
        return self


class FunctionDefinition(_Lenient):
    name: str = Field(pattern=_FUNCTION_NAME)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None

    @field_validator("parameters")
    @classmethod
    def _valid_schema(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        if v is not None:
            check_json_schema(v)
        return v


class FunctionTool(_Lenient):
    """One entry of ``tools`` (function tools only)."""

    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(_Lenient):
    name: str = Field(min_length=1)


class NamedToolChoice(_Lenient):
    type: Literal["function"]
    function: NamedFunction


class SamplingFields(_Lenient):
    """The sampling fields ``/v1/chat/completions`` and ``/v1/completions`` share: OpenAI's, then
    vLLM's extensions with vLLM's names and ranges (docs/api.md lists each)."""

    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    n: int = Field(1, ge=1, le=16)
    seed: int | None = Field(None, ge=-(2**63), le=2**63 - 1)  # int64, as OpenAI
    stop: list[str] | None = Field(None, max_length=4)
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    logit_bias: dict[str, Annotated[float, Field(ge=-100.0, le=100.0)]] | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    response_format: ResponseFormat | None = None
    user: str | None = None
    # vLLM's extensions
    structured_outputs: StructuredOutputs | None = None
    top_k: int | None = Field(None, ge=-1)
    min_p: float | None = Field(None, ge=0.0, le=1.0)
    repetition_penalty: float | None = Field(None, gt=0.0, le=2.0)
    min_tokens: int = Field(0, ge=0)
    ignore_eos: bool = False
    stop_token_ids: list[Annotated[int, Field(ge=0)]] | None = None
    include_stop_str_in_output: bool = False
    skip_special_tokens: bool = True
    spaces_between_special_tokens: bool = True
    allowed_token_ids: list[Annotated[int, Field(ge=0)]] | None = Field(None, min_length=1)
    bad_words: list[Annotated[str, Field(min_length=1)]] | None = None
    prompt_logprobs: int | None = Field(None, ge=0, le=20)
    echo: bool = False
    priority: int = Field(0, ge=-(2**63), le=2**63 - 1)
    request_id: str | None = Field(None, min_length=1, max_length=200, pattern=r"^[\x21-\x7e]+$")
    cache_salt: str | None = Field(None, min_length=1, max_length=1024)
    session_id: str | None = None

    @field_validator("stop", mode="before")
    @classmethod
    def _stop_list(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("stop")
    @classmethod
    def _stop_not_empty(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and any(s == "" for s in v):
            raise ValueError("stop strings must not be empty")
        return v

    @field_validator("logit_bias")
    @classmethod
    def _bias_keys(cls, v: dict[str, float] | None) -> dict[str, float] | None:
        if v:
            for key in v:
                if not key.isdigit():
                    raise ValueError(f"keys must be token ids (decimal strings), got {key!r}")
        return v

    @property
    def include_usage(self) -> bool:
        return bool(self.stream and self.stream_options and self.stream_options.include_usage)

    @property
    def json_response_format(self) -> bool:
        """True for ``response_format`` ``json_object`` / ``json_schema`` (``text`` is the default)."""
        return self.response_format is not None and self.response_format.type != "text"


class ChatCompletionRequest(SamplingFields):
    """The body of ``POST /v1/chat/completions``: OpenAI's fields and vLLM's extensions (see
    docs/api.md for every field and what it gets)."""

    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool | None = False
    top_logprobs: int | None = Field(None, ge=0, le=20)
    tools: list[FunctionTool] | None = Field(None, min_length=1)
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    include_reasoning: bool = True
    # ours
    image_placement: Literal["interleaved", "front"] = "interleaved"

    @model_validator(mode="after")
    def _cross_field(self) -> ChatCompletionRequest:
        if self.top_logprobs is not None and self.top_logprobs > 0 and not self.logprobs:
            raise ValueError("top_logprobs requires logprobs: true")
        if self.stream_options is not None and not self.stream:
            raise ValueError("stream_options is only allowed with stream: true")
        if self.tool_choice is not None and self.tool_choice != "none" and not self.tools:
            raise ValueError("tool_choice requires tools")
        if isinstance(self.tool_choice, NamedToolChoice):
            names = [t.function.name for t in self.tools or ()]
            if self.tool_choice.function.name not in names:
                raise ValueError(
                    f"tool_choice names the function '{self.tool_choice.function.name}', which is not in "
                    f"tools ({', '.join(names)})"
                )
        if self.uses_tool_constraint and (self.structured_outputs is not None or self.json_response_format):
            raise ValueError(
                "tool_choice 'required' or a named function constrains the output to tool calls; "
                "it cannot be combined with response_format json_object / json_schema or structured_outputs"
            )
        if self.structured_outputs is not None and self.json_response_format:
            raise ValueError("give either response_format or structured_outputs, not both")
        if self.prompt_logprobs is not None and self.stream:
            raise ValueError("prompt_logprobs is not available with stream: true")
        if self.max_completion_tokens is None and self.max_tokens is None:
            pass
        elif self.min_tokens > (self.requested_max_tokens or 0):
            raise ValueError(
                f"min_tokens ({self.min_tokens}) must not exceed max_tokens ({self.requested_max_tokens})"
            )
        return self

    @property
    def requested_max_tokens(self) -> int | None:
        """``max_completion_tokens`` (the newer name) or ``max_tokens``, None when neither is given."""
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens

    @property
    def effective_tool_choice(self) -> str | NamedToolChoice:
        """``tool_choice``, defaulting as OpenAI does: ``auto`` with tools, ``none`` without."""
        if self.tool_choice is not None:
            return self.tool_choice
        return "auto" if self.tools else "none"

    @property
    def uses_tool_constraint(self) -> bool:
        """``tool_choice`` is ``required`` or a named function: decoding is constrained to tool calls."""
        return self.effective_tool_choice == "required" or isinstance(
            self.effective_tool_choice, NamedToolChoice
        )


def check_json_schema(schema: dict[str, Any]) -> None:
    """Check that ``schema`` is a valid JSON Schema (against its ``$schema`` metaschema, default 2020-12).

    Raises:
        ValueError: with the first violation.
    """
    import jsonschema

    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path)
        raise ValueError(f"not a valid JSON schema{f' at {where}' if where else ''}: {exc.message}") from None


# Fields OpenAI or vLLM define for chat completions that this server does not implement. Each maps to
# a predicate of the values that are fine (the field's default or null); anything else is a 400
# ``unsupported_parameter`` naming the field, never silently dropped.
def _null(v: Any) -> bool:
    return v is None


def _false(v: Any) -> bool:
    return v is None or v is False


def _empty(v: Any) -> bool:
    return v is None or v in ({}, [])


UNSUPPORTED_CHAT_FIELDS: dict[str, tuple[Any, str]] = {
    # OpenAI
    "audio": (_null, "audio output is not available: the model generates text only"),
    "modalities": (
        lambda v: v is None or v == ["text"],
        "the model generates text only (modalities: ['text'])",
    ),
    "prediction": (_null, "predicted outputs are not implemented"),
    "web_search_options": (_null, "web search is not available"),
    "store": (_false, "completions are not stored"),
    "metadata": (_empty, "metadata is only for stored completions, which this server does not keep"),
    "service_tier": (lambda v: v in (None, "auto", "default"), "only the default service tier exists"),
    "reasoning_effort": (_null, "the model does not reason"),
    "verbosity": (_null, "verbosity is not implemented"),
    "functions": (_null, "the deprecated functions field is not implemented; use tools"),
    "function_call": (_null, "the deprecated function_call field is not implemented; use tool_choice"),
    "moderation": (_null, "moderation is not available"),
    "prompt_cache_retention": (
        _null,
        "prompt cache retention is not configurable (vLLM prefix caching is automatic)",
    ),
    "prompt_cache_options": (
        _null,
        "prompt cache options are not configurable (vLLM prefix caching is automatic)",
    ),
    # vLLM
    "use_beam_search": (_false, "beam search is not implemented"),
    "best_of": (lambda v: v is None or v == 1, "best_of is not implemented"),
    "length_penalty": (
        lambda v: v is None or v == 1.0,
        "length_penalty applies to beam search, which is not implemented",
    ),
    "watermarking": (_false, "watermarking is not implemented"),
    "truncate_prompt_tokens": (
        _null,
        "prompt truncation is not implemented: a prompt that does not fit is a 400",
    ),
    "truncation_side": (_null, "prompt truncation is not implemented"),
    "logprob_token_ids": (_null, "logprob_token_ids is not implemented; use top_logprobs"),
    "add_generation_prompt": (lambda v: v is None or v is True, "the assistant turn is always opened"),
    "continue_final_message": (_false, "continuing the final message is not implemented"),
    "add_special_tokens": (_false, "the prompt is rendered with its ChatML markers only"),
    "documents": (_null, "documents are not rendered by this server's prompt format"),
    "chat_template": (_null, "the prompt format is fixed (ChatML, see docs/api.md)"),
    "chat_template_kwargs": (_empty, "the prompt format is fixed (ChatML, see docs/api.md)"),
    "media_io_kwargs": (_empty, "media options go in the content parts (video_url.num_frames, fps)"),
    "mm_processor_kwargs": (_empty, "processor options are fixed by the checkpoint"),
    "return_tokens_as_token_ids": (_false, "return_tokens_as_token_ids is not implemented"),
    "return_token_ids": (_false, "return_token_ids is not implemented"),
    "return_token_offsets": (_false, "return_token_offsets is not implemented"),
    "return_prompt_text": (_false, "return_prompt_text is not implemented"),
    "mm_payload": (lambda v: v in (None, "tensors"), "render payloads are not implemented"),
    "return_mm_kwargs": (_null, "render payloads are not implemented"),
    "routed_experts_prompt_start": (lambda v: v in (None, 0), "routed experts are not returned"),
    "kv_transfer_params": (_null, "disaggregated serving is not configured"),
    "ec_transfer_params": (_null, "disaggregated serving is not configured"),
    "vllm_xargs": (_empty, "custom extension arguments are not implemented"),
    "repetition_detection": (_null, "repetition_detection is not implemented"),
    "stream_interval": (lambda v: v in (None, 1), "every output is streamed as it comes"),
    "thinking_token_budget": (_null, "the model does not reason"),
    "guided_json": (_null, "use structured_outputs.json or response_format"),
    "guided_regex": (_null, "use structured_outputs.regex"),
    "guided_choice": (_null, "use structured_outputs.choice"),
    "guided_grammar": (_null, "use structured_outputs.grammar"),
    "guided_decoding_backend": (_null, "the structured-output backend is vLLM's automatic choice"),
    "guided_whitespace_pattern": (_null, "use structured_outputs.whitespace_pattern"),
    "logits_processors": (_null, "custom logits processors are not enabled"),
}


def check_unsupported(body: dict[str, Any], table: dict[str, tuple[Any, str]]) -> None:
    """400 ``unsupported_parameter`` for the first field of ``table`` whose value is not accepted, and
    for content parts or options this server does not implement (chat bodies).

    Raises:
        APIError: 400 with ``param`` naming the field.
    """
    for name, (ok, why) in table.items():
        if name in body and not ok(body[name]):
            raise unsupported_parameter(name, why)
    messages = body.get("messages")
    if isinstance(messages, list):
        for i, msg in enumerate(messages):
            if not isinstance(msg, dict):
                continue
            if msg.get("role") == "function":
                raise unsupported_parameter(
                    f"messages[{i}].role", "the deprecated 'function' role is not implemented; use 'tool'"
                )
            if msg.get("audio") is not None:
                raise unsupported_parameter(f"messages[{i}].audio", "audio is not available")
            if msg.get("function_call") is not None:
                raise unsupported_parameter(f"messages[{i}].function_call", "use tool_calls")
            content = msg.get("content")
            if isinstance(content, list):
                for j, part in enumerate(content):
                    if isinstance(part, dict) and part.get("type") in UNSUPPORTED_PART_TYPES:
                        raise unsupported_parameter(
                            f"messages[{i}].content[{j}]",
                            f"'{part['type']}' parts are not supported: the model takes text, images, "
                            "videos and scene views",
                        )
    rf = body.get("response_format")
    if isinstance(rf, dict) and rf.get("type") in ("structural_tag", "grammar", "regex"):
        raise unsupported_parameter(
            "response_format", f"response_format type '{rf['type']}' is not implemented"
        )
    so = body.get("structured_outputs")
    if isinstance(so, dict) and so.get("structural_tag") is not None:
        raise unsupported_parameter(
            "structured_outputs.structural_tag", "structural tags are not implemented"
        )
    if isinstance(so, dict) and so.get("whitespace_pattern") is not None:
        raise unsupported_parameter(
            "structured_outputs.whitespace_pattern",
            "vLLM 0.32's structured-output backends take no per-request whitespace pattern; "
            "disable_any_whitespace is supported",
        )
    tools = body.get("tools")
    if isinstance(tools, list):
        for k, tool in enumerate(tools):
            if isinstance(tool, dict) and tool.get("type") not in (None, "function"):
                raise unsupported_parameter(
                    f"tools[{k}]", f"tool type '{tool.get('type')}' is not implemented; use function tools"
                )
    tc = body.get("tool_choice")
    if isinstance(tc, dict) and tc.get("type") not in (None, "function"):
        raise unsupported_parameter("tool_choice", f"tool_choice type '{tc.get('type')}' is not implemented")
    so_opts = body.get("stream_options")
    if isinstance(so_opts, dict):
        for opt in ("continuous_usage_stats", "include_obfuscation"):
            if so_opts.get(opt):
                raise unsupported_parameter(f"stream_options.{opt}", f"{opt} is not implemented")


def unsupported_parameter(param: str, why: str) -> APIError:
    """HTTP 400 ``invalid_request_error`` with code ``unsupported_parameter`` (OpenAI's code)."""
    return invalid_request(
        f"Unsupported parameter: '{param}': {why}.", param=param, code="unsupported_parameter"
    )


_CROSS_FIELD_PARAMS = {
    "top_logprobs requires": "top_logprobs",
    "stream_options is only": "stream_options",
    "tool_choice": "tool_choice",
    "give either response_format": "response_format",
    "prompt_logprobs is not": "prompt_logprobs",
    "min_tokens": "min_tokens",
}


def _clean_loc(loc: tuple[Any, ...]) -> list[str | int]:
    """Drop the discriminator tags pydantic inserts after ``content[i]`` / ``response_format``, and
    the union member names pydantic inserts after ``tool_choice`` / ``structured_outputs.json``."""
    out: list[str | int] = []
    for i, item in enumerate(loc):
        if (
            isinstance(item, str)
            and item in PART_TYPES
            and i >= 2
            and loc[i - 2] == "content"
            and isinstance(loc[i - 1], int)
        ):
            continue
        if i >= 1 and loc[i - 1] == "response_format" and item in ("text", "json_object", "json_schema"):
            continue
        if isinstance(item, str) and (
            item.startswith(("literal[", "function-", "dict[")) or item in ("str", "NamedToolChoice")
        ):
            continue
        out.append(item)
    return out


def parse_chat_request(body: Any) -> ChatCompletionRequest:
    """Validate a decoded JSON body.

    Raises:
        APIError: 400 naming the first invalid field in ``param``; code ``unsupported_parameter``
            for a field this server does not implement.
    """
    if not isinstance(body, dict):
        raise invalid_request("The request body must be a JSON object.")
    check_unsupported(body, UNSUPPORTED_CHAT_FIELDS)
    try:
        return ChatCompletionRequest.model_validate(body)
    except ValidationError as exc:
        raise _to_api_error(exc) from None


def _to_api_error(exc: ValidationError) -> APIError:
    errors = exc.errors(include_url=False, include_context=False)
    if not errors:
        return invalid_request("Invalid request.")
    err = errors[0]
    loc = tuple(err.get("loc", ()))
    msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
    if not loc:
        param = next((p for needle, p in _CROSS_FIELD_PARAMS.items() if needle in msg), None)
        return invalid_request(msg, param=param)
    if loc == ("messages",) and err.get("type") in ("missing", "too_short"):
        return invalid_request(
            "'messages' is required and must contain at least one message.", param="messages"
        )
    param = format_loc(_clean_loc(loc))
    if param and param.startswith("response_format"):
        param = "response_format" if "json_schema" not in param else param
    more = f" ({len(errors) - 1} more error(s))" if len(errors) > 1 else ""
    return invalid_request(f"Invalid value for '{param}': {msg}{more}", param=param)


# ------------------------------------------------------------------------------------------------
# Response: the openai package's own types (one definition of the wire format)
# ------------------------------------------------------------------------------------------------

# Re-exported (``X as X``, or an alias assignment) for server.chat_output and server.completions,
# which build responses from them.
from openai.types import Completion as Completion  # noqa: E402
from openai.types import CompletionChoice as CompletionChoice  # noqa: E402
from openai.types import CompletionUsage, completion_choice  # noqa: E402
from openai.types.chat import ChatCompletion as ChatCompletion  # noqa: E402
from openai.types.chat import ChatCompletionChunk as ChatCompletionChunk  # noqa: E402
from openai.types.chat import ChatCompletionMessage, chat_completion_chunk  # noqa: E402
from openai.types.chat import chat_completion_message_function_tool_call as _function_tool_call  # noqa: E402
from openai.types.chat.chat_completion import Choice as Choice  # noqa: E402
from openai.types.chat.chat_completion import ChoiceLogprobs as ChoiceLogprobs  # noqa: E402
from openai.types.chat.chat_completion_chunk import ChoiceDeltaToolCall as ChoiceDeltaToolCall  # noqa: E402
from openai.types.chat.chat_completion_token_logprob import ChatCompletionTokenLogprob  # noqa: E402
from openai.types.chat.chat_completion_token_logprob import TopLogprob as TopLogprob  # noqa: E402

ChunkChoice = chat_completion_chunk.Choice
DeltaMessage = chat_completion_chunk.ChoiceDelta
ChunkLogprobs = chat_completion_chunk.ChoiceLogprobs
MessageToolCall = _function_tool_call.ChatCompletionMessageFunctionToolCall
MessageToolCallFunction = _function_tool_call.Function
TokenLogprob = ChatCompletionTokenLogprob
CompletionLogprobs = completion_choice.Logprobs

Usage = CompletionUsage
AssistantMessage = ChatCompletionMessage


def wire(obj: BaseModel) -> dict[str, Any]:
    """The JSON body of an ``openai`` type: the fields that were set (so ``annotations`` or
    ``function_call`` are absent rather than ``null``, which OpenAI's schema does not allow)."""
    return obj.model_dump(mode="json", exclude_unset=True)


class ModelCard(BaseModel):
    """OpenAI's model object plus vLLM's ``max_model_len``."""

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "llava-interleave-serve"
    max_model_len: int | None = None


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
