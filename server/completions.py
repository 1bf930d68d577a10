"""``POST /v1/completions`` (text prompts), ``POST /tokenize`` and ``POST /detokenize`` (vLLM's shapes).

- ``/v1/completions``: OpenAI's legacy completions on the same engine and sampling fields as chat
  (:class:`~server.schemas.SamplingFields`); the prompt is a string (tokenized as vLLM does: special
  tokens in it are recognised, no BOS for Qwen) or a list of token ids; text only (an ``<image>``
  placeholder in it is a 400). Responses are the ``openai`` package's ``Completion`` type; streamed,
  every chunk is a ``text_completion`` object too.
- ``/tokenize``: ``{"prompt"}`` or ``{"messages"}`` (with ``tools``): ``{"count", "max_model_len",
  "tokens", "token_strs"}``. For messages the tokens are the engine's prompt: each image / video
  frame / scene view is its 729 visual tokens (the ``<image>`` id repeated), so ``count`` is the
  ``usage.prompt_tokens`` the same chat request would get. Images and scene views are counted from
  the request without fetching or decoding anything; a video's frame count depends on the clip, so
  videos are fetched and sampled (as for a chat request).
- ``/detokenize``: ``{"tokens"}`` -> ``{"prompt"}``.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import Field, ValidationError, field_validator, model_validator

from server.auth import check_api_key
from server.chat import ChatService, PreparedChat
from server.chat_output import finish_reason as chat_finish_reason
from server.chat_output import prompt_logprobs_json, system_fingerprint, usage
from server.errors import APIError, invalid_request
from server.generation import EngineStep, TokenLogprobInfo
from server.prompt import BuiltPrompt, plan_media
from server.sampling import sampling_options
from server.schemas import (
    UNSUPPORTED_CHAT_FIELDS,
    Completion,
    CompletionChoice,
    CompletionLogprobs,
    SamplingFields,
    _Lenient,
    _to_api_error,
    check_unsupported,
    parse_chat_request,
    unsupported_parameter,
    wire,
)
from server.streaming import DONE, ClientDisconnected, sse_event

router = APIRouter()


def _ok_null(v: Any) -> bool:
    return v is None


UNSUPPORTED_COMPLETION_FIELDS: dict[str, tuple[Any, str]] = {
    "suffix": (_ok_null, "suffix (insertion) is not implemented"),
    "best_of": (lambda v: v is None or v == 1, "best_of is not implemented"),
    "use_beam_search": (lambda v: not v, "beam search is not implemented"),
    "length_penalty": (
        lambda v: v is None or v == 1.0,
        "length_penalty applies to beam search, which is not implemented",
    ),
    "truncate_prompt_tokens": (
        _ok_null,
        "prompt truncation is not implemented: a prompt that does not fit is a 400",
    ),
    "prompt_embeds": (_ok_null, "prompt embeddings are not accepted"),
    "return_tokens_as_token_ids": (lambda v: not v, "return_tokens_as_token_ids is not implemented"),
    "return_token_ids": (lambda v: not v, "return_token_ids is not implemented"),
    "logprob_token_ids": (_ok_null, "logprob_token_ids is not implemented; use logprobs"),
    "kv_transfer_params": (_ok_null, "disaggregated serving is not configured"),
    "vllm_xargs": (lambda v: not v, "custom extension arguments are not implemented"),
    "logits_processors": (_ok_null, "custom logits processors are not enabled"),
    "guided_json": (_ok_null, "use structured_outputs.json or response_format"),
    "guided_regex": (_ok_null, "use structured_outputs.regex"),
    "guided_choice": (_ok_null, "use structured_outputs.choice"),
    "guided_grammar": (_ok_null, "use structured_outputs.grammar"),
    "stream_interval": (lambda v: v in (None, 1), "every output is streamed as it comes"),
    "repetition_detection": (_ok_null, "repetition_detection is not implemented"),
    "watermarking": (lambda v: not v, "watermarking is not implemented"),
}


class CompletionRequest(SamplingFields):
    """The body of ``POST /v1/completions``.

    ``prompt``: a string, a list of token ids, or a list of one of those (one prompt per request;
    several prompts are a 400). ``max_tokens`` defaults to 16, as OpenAI's. ``logprobs``: 0-20 top
    alternatives per token (OpenAI's legacy integer).
    """

    model: str | None = None
    prompt: str | list[Annotated[int, Field(ge=0)]] | list[str] | list[list[Annotated[int, Field(ge=0)]]]
    max_tokens: int | None = Field(16, ge=1)
    logprobs: int | None = Field(None, ge=0, le=20)
    add_special_tokens: bool = True

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, v: Any) -> Any:
        if isinstance(v, list) and v and isinstance(v[0], (str, list)):
            if len(v) != 1:
                raise ValueError(f"one prompt per request (got {len(v)}); send several requests")
            v = v[0]
        if isinstance(v, list) and not v:
            raise ValueError("the prompt is empty")
        return v

    @model_validator(mode="after")
    def _cross(self) -> CompletionRequest:
        if self.stream_options is not None and not self.stream:
            raise ValueError("stream_options is only allowed with stream: true")
        if self.structured_outputs is not None and self.json_response_format:
            raise ValueError("give either response_format or structured_outputs, not both")
        if self.prompt_logprobs is not None and self.stream:
            raise ValueError("prompt_logprobs is not available with stream: true")
        if self.max_tokens is not None and self.min_tokens > self.max_tokens:
            raise ValueError(f"min_tokens ({self.min_tokens}) must not exceed max_tokens ({self.max_tokens})")
        return self

    @property
    def requested_max_tokens(self) -> int | None:
        return self.max_tokens


def _completion_table() -> dict[str, tuple[Any, str]]:
    """The fields /v1/completions answers with 400 ``unsupported_parameter``: its own and the chat
    ones that are not completion fields."""
    table = {k: v for k, v in UNSUPPORTED_CHAT_FIELDS.items() if k not in CompletionRequest.model_fields}
    table.update(UNSUPPORTED_COMPLETION_FIELDS)
    return table


_COMPLETION_CROSS = {
    "stream_options is only": "stream_options",
    "give either response_format": "response_format",
    "prompt_logprobs is not": "prompt_logprobs",
    "min_tokens": "min_tokens",
}


def parse_completion_request(body: Any) -> CompletionRequest:
    """Validate a ``/v1/completions`` body.

    Raises:
        APIError: 400 naming the field (``unsupported_parameter`` for fields not implemented).
    """
    if not isinstance(body, dict):
        raise invalid_request("The request body must be a JSON object.")
    check_unsupported(body, _completion_table())
    if body.get("echo") and body.get("logprobs") is not None:
        raise unsupported_parameter(
            "echo", "echo together with logprobs (prompt logprobs in the legacy format) is not implemented"
        )
    try:
        return CompletionRequest.model_validate(body)
    except ValidationError as exc:
        err = _to_api_error(exc)
        if err.param is None:
            err.param = next((p for k, p in _COMPLETION_CROSS.items() if k in err.message), None)
        if err.param and err.param.startswith("prompt"):
            err.param = "prompt"
        raise err from None


def _encode_prompt(service: ChatService, request: CompletionRequest) -> list[int]:
    if isinstance(request.prompt, str):
        tok = service.prompt_builder.tokenizer
        ids = list(tok.encode(request.prompt, add_special_tokens=request.add_special_tokens))
    else:
        ids = list(request.prompt)  # type: ignore[arg-type]
        size = _vocab_size(service.prompt_builder.tokenizer)
        bad = [t for t in ids if t >= size] if size is not None else []
        if bad and size is not None:
            raise invalid_request(
                f"token ids {bad[:5]} are outside the vocabulary (0-{size - 1})", param="prompt"
            )
    if service.prompt_builder.image_token_id in ids:
        raise invalid_request(
            "/v1/completions takes text only: the prompt contains the <image> placeholder token; "
            "send images through /v1/chat/completions.",
            param="prompt",
        )
    return ids


def _vocab_size(tokenizer: Any) -> int | None:
    """Tokens the tokenizer knows (``len(tokenizer)``: vocabulary + added tokens), None if unknown."""
    try:
        return len(tokenizer)
    except TypeError:
        return None


def _legacy_logprobs(items: list[TokenLogprobInfo], offset: int) -> tuple[CompletionLogprobs, int]:
    tokens, token_lps, tops, offsets = [], [], [], []
    for t in items:
        tokens.append(t.token)
        token_lps.append(_clamp(t.logprob))
        tops.append({s: _clamp(lp) for s, lp in t.top})
        offsets.append(offset)
        offset += len(t.token)
    return CompletionLogprobs(
        tokens=tokens, token_logprobs=token_lps, top_logprobs=tops, text_offset=offsets
    ), offset


def _clamp(lp: float) -> float:
    import math

    return max(lp, -9999.0) if not math.isnan(lp) else -9999.0


def _finish(reason: str | None) -> str:
    return chat_finish_reason(reason or "stop", "none", False)


async def _prepare(
    service: ChatService, request: CompletionRequest, arrival: float
) -> tuple[PreparedChat, str]:
    if request.model is not None and request.model != service.model_name:
        raise APIError(
            404,
            f"The model '{request.model}' does not exist; this server serves '{service.model_name}'.",
            param="model",
            code="model_not_found",
        )
    loop = asyncio.get_running_loop()
    ids = await loop.run_in_executor(service._tokenizer_pool, _encode_prompt, service, request)
    max_len = service.engine.max_model_len
    needed = len(ids) + (request.max_tokens or 1)
    if needed > max_len:
        raise invalid_request(
            f"This request needs {needed} tokens: {len(ids)} prompt tokens + {request.max_tokens} max_tokens, "
            f"but the model's context holds {max_len} tokens.",
            param="max_tokens" if len(ids) < max_len else "prompt",
            code="context_length_exceeded",
        )
    options = sampling_options(request, max_tokens=request.max_tokens or 16, logprobs=request.logprobs)
    prompt = BuiltPrompt(
        prompt_token_ids=ids,
        num_images=0,
        text_tokens=len(ids),
        tokens_per_image=service.prompt_builder.tokens_per_image,
    )
    engine_id = f"cmpl-{uuid.uuid4().hex}"
    prepared = PreparedChat(
        id=engine_id,
        response_id=f"cmpl-{request.request_id}" if request.request_id else engine_id,
        request=request,  # type: ignore[arg-type]
        prompt=prompt,
        images=[],
        options=options,
        arrival=arrival,
    )
    echo = ""
    if request.echo:
        echo = (
            request.prompt
            if isinstance(request.prompt, str)
            else service.prompt_builder.tokenizer.decode(ids)
        )
    return prepared, echo


async def _complete(service: ChatService, prepared: PreparedChat, echo: str) -> Completion:
    n = prepared.options.n
    texts = [echo] * n
    tokens = [0] * n
    finish: list[str | None] = [None] * n
    lps: list[list[TokenLogprobInfo]] = [[] for _ in range(n)]
    prompt_tokens = prepared.prompt.prompt_tokens
    cached = None
    first: EngineStep | None = None
    async for step in service.generate(prepared):
        first = first or step
        prompt_tokens = step.prompt_tokens
        cached = step.cached_tokens if step.cached_tokens is not None else cached
        for d in step.deltas:
            texts[d.index] += d.text
            tokens[d.index] += d.num_tokens
            finish[d.index] = d.finish_reason or finish[d.index]
            if d.logprobs:
                lps[d.index].extend(d.logprobs)
    want = prepared.options.logprobs is not None
    choices = [
        CompletionChoice(
            index=i,
            text=texts[i],
            logprobs=_legacy_logprobs(lps[i], 0)[0] if want else None,
            finish_reason=_finish(finish[i]),  # type: ignore[arg-type]
        )
        for i in range(n)
    ]
    extra: dict[str, Any] = {}
    plp = prompt_logprobs_json(first)
    if plp is not None:
        extra["prompt_logprobs"] = plp
    return Completion(
        id=prepared.response_id,
        object="text_completion",
        created=prepared.created,
        model=service.model_name,
        choices=choices,
        usage=usage(prompt_tokens, sum(tokens), cached),
        system_fingerprint=system_fingerprint(service.model_name),
        **extra,
    )


async def _stream(
    service: ChatService,
    prepared: PreparedChat,
    steps: AsyncIterator[EngineStep],
    first: EngineStep | None,
    echo: str,
) -> AsyncIterator[bytes]:
    request: CompletionRequest = prepared.request  # type: ignore[assignment]
    fingerprint = system_fingerprint(service.model_name)
    want = prepared.options.logprobs is not None
    offsets = [len(echo)] * prepared.options.n

    def chunk(choices: list[dict[str, Any]], usage_obj: Any = None) -> bytes:
        body: dict[str, Any] = {
            "id": prepared.response_id,
            "object": "text_completion",
            "created": prepared.created,
            "model": service.model_name,
            "choices": choices,
            "system_fingerprint": fingerprint,
        }
        if request.include_usage:
            body["usage"] = wire(usage_obj) if usage_obj is not None else None
        return sse_event(body)

    async def all_steps() -> AsyncIterator[EngineStep]:
        if first is not None:
            yield first
        async for s in steps:
            yield s

    completion_tokens = 0
    prompt_tokens = prepared.prompt.prompt_tokens
    cached = None
    try:
        if echo:
            for i in range(prepared.options.n):
                yield chunk([{"index": i, "text": echo, "logprobs": None, "finish_reason": None}])
        async for step in all_steps():
            prompt_tokens = step.prompt_tokens
            cached = step.cached_tokens if step.cached_tokens is not None else cached
            for d in step.deltas:
                completion_tokens += d.num_tokens
                if not d.text and d.finish_reason is None:
                    continue
                lp = None
                if want:
                    legacy, offsets[d.index] = _legacy_logprobs(list(d.logprobs or ()), offsets[d.index])
                    lp = wire(legacy)
                yield chunk(
                    [
                        {
                            "index": d.index,
                            "text": d.text,
                            "logprobs": lp,
                            "finish_reason": _finish(d.finish_reason) if d.finish_reason else None,
                        }
                    ]
                )
        if request.include_usage:
            yield chunk([], usage(prompt_tokens, completion_tokens, cached))
    except APIError as exc:
        yield sse_event(exc.to_dict())
    except Exception:  # noqa: BLE001 - logged, and the stream ends with an error event
        from server.errors import internal_error

        yield sse_event(internal_error().to_dict())
    yield DONE


@router.post("/v1/completions")
async def completions(request: Request) -> Response:
    """OpenAI's ``POST /v1/completions`` (see the module docstring)."""
    from server.routes import (
        CLIENT_CLOSED,
        admit,
        app_state,
        prepare_within_deadline,
        read_json_body,
        require_service,
        run_generation,
    )

    st = app_state(request)
    check_api_key(request, st.settings.api_key)
    arrival = time.perf_counter()
    service = require_service(st)
    raw_size = len(await request.body())
    body = parse_completion_request(await read_json_body(request))
    admit(request, st, 0, raw_size)
    timeout_s = st.settings.request_timeout_seconds
    deadline = asyncio.get_running_loop().time() + timeout_s
    try:
        prepared, echo = await prepare_within_deadline(
            request, st, _prepare(service, body, arrival), deadline
        )
    except ClientDisconnected:
        return Response(status_code=CLIENT_CLOSED)
    return await run_generation(
        request,
        st,
        service,
        prepared,
        stream=bool(body.stream),
        deadline=deadline,
        complete=lambda: _complete(service, prepared, echo),
        events=lambda steps, first: _stream(service, prepared, steps, first, echo),
    )


# -- tokenize / detokenize ------------------------------------------------------------------------


class TokenizeTextRequest(_Lenient):
    """vLLM's ``TokenizeCompletionRequest``."""

    model: str | None = None
    prompt: str
    add_special_tokens: bool = True
    return_token_strs: bool = False


class DetokenizeRequest(_Lenient):
    """vLLM's ``DetokenizeRequest``."""

    model: str | None = None
    tokens: list[Annotated[int, Field(ge=0)]]


_CHAT_TOKENIZE_KEYS = ("model", "messages", "tools", "tool_choice", "image_placement")


def _check_model(service: ChatService, model: str | None) -> None:
    if model is not None and model != service.model_name:
        raise APIError(
            404,
            f"The model '{model}' does not exist; this server serves '{service.model_name}'.",
            param="model",
            code="model_not_found",
        )


async def _tokenize_chat(service: ChatService, body: dict[str, Any]) -> tuple[list[int], int]:
    """Prompt ids of a chat body with every placeholder expanded to its visual tokens."""
    for key, ok in (
        ("add_generation_prompt", lambda v: v in (None, True)),
        ("continue_final_message", lambda v: not v),
        ("chat_template", lambda v: v is None),
        ("chat_template_kwargs", lambda v: not v),
        ("add_special_tokens", lambda v: not v),
        ("mm_processor_kwargs", lambda v: not v),
    ):
        if key in body and not ok(body[key]):
            raise unsupported_parameter(
                key, "the prompt format is fixed (ChatML with the assistant turn opened)"
            )
    chat = parse_chat_request({k: body[k] for k in _CHAT_TOKENIZE_KEYS if k in body})
    _check_model(service, chat.model)
    plan = plan_media(chat, service.limits)
    counts: list[int] = []
    for media in plan:
        if media.kind == "image":
            counts.append(1)
        elif media.kind == "scene":
            counts.append(len(media.urls))
        else:  # a clip may give fewer frames than num_frames: sample it, as a chat request would
            frames, _ = await service._load_one(media)
            counts.append(len(frames))
    built = await service._build_prompt(chat, counts, {})
    builder = service.prompt_builder
    ids: list[int] = []
    for t in built.prompt_token_ids:
        ids += [t] * builder.tokens_per_image if t == builder.image_token_id else [t]
    return ids, len(ids)


@router.post("/tokenize")
async def tokenize(request: Request) -> JSONResponse:
    """vLLM's ``POST /tokenize``: ``{"prompt"}`` or ``{"messages"}`` -> ``{"count", "max_model_len",
    "tokens", "token_strs"}`` (see the module docstring for visual tokens)."""
    from server.routes import app_state, read_json_body, require_service

    st = app_state(request)
    check_api_key(request, st.settings.api_key)
    service = require_service(st)
    body = await read_json_body(request)
    if not isinstance(body, dict):
        raise invalid_request("The request body must be a JSON object.")
    return_strs = body.get("return_token_strs", False)
    if not isinstance(return_strs, bool):
        raise invalid_request(
            "Invalid value for 'return_token_strs': Input should be a valid boolean",
            param="return_token_strs",
        )
    if "messages" in body:
        ids, count = await _tokenize_chat(service, body)
    else:
        try:
            req = TokenizeTextRequest.model_validate(body)
        except ValidationError as exc:
            raise _to_api_error(exc) from None
        _check_model(service, req.model)
        tok = service.prompt_builder.tokenizer
        loop = asyncio.get_running_loop()
        ids = await loop.run_in_executor(
            service._tokenizer_pool,
            lambda: list(tok.encode(req.prompt, add_special_tokens=req.add_special_tokens)),
        )
        count = len(ids)
    out: dict[str, Any] = {
        "count": count,
        "max_model_len": service.engine.max_model_len,
        "tokens": ids,
        "token_strs": None,
    }
    if return_strs:
        tok = service.prompt_builder.tokenizer
        convert = getattr(tok, "convert_ids_to_tokens", None)
        out["token_strs"] = list(convert(ids)) if convert is not None else [tok.decode([i]) for i in ids]
    return JSONResponse(out)


@router.post("/detokenize")
async def detokenize(request: Request) -> JSONResponse:
    """vLLM's ``POST /detokenize``: ``{"tokens": [...]}`` -> ``{"prompt": text}``; an id outside the
    vocabulary is a 400 naming ``tokens``."""
    from server.routes import app_state, read_json_body, require_service

    st = app_state(request)
    check_api_key(request, st.settings.api_key)
    service = require_service(st)
    try:
        req = DetokenizeRequest.model_validate(await read_json_body(request))
    except ValidationError as exc:
        raise _to_api_error(exc) from None
    _check_model(service, req.model)
    tok = service.prompt_builder.tokenizer
    vocab = _vocab_size(tok)
    if vocab is not None:
        bad = [t for t in req.tokens if t >= vocab]
        if bad:
            raise invalid_request(
                f"token ids {bad[:5]} are outside the vocabulary (0-{vocab - 1})", param="tokens"
            )
    return JSONResponse({"prompt": tok.decode(req.tokens)})
