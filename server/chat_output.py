"""Engine outputs -> OpenAI ``chat.completion`` objects and ``chat.completion.chunk`` streams.

The wire format is the ``openai`` package's own types (:mod:`server.schemas` re-exports them),
dumped with only the fields that were set: ``message.refusal: null``, ``logprobs.refusal: null``,
``system_fingerprint`` a string, ``tool_calls`` in OpenAI's shape, ``usage`` with
``prompt_tokens_details.cached_tokens``.

Per choice, the text is post-processed by the request's tool mode (:mod:`server.tools`):

- no tools / ``tool_choice: "none"``: content as generated;
- ``auto``: vLLM's Hermes parser splits content and ``<tool_call>`` blocks (streamed incrementally);
- ``required`` / a named function (constrained decoding): the JSON becomes ``tool_calls``; streamed,
  the calls are sent whole when the choice finishes (the JSON is complete only then).

``finish_reason`` is ``tool_calls`` when a choice called tools under ``auto`` / ``required``, ``stop``
for a named function (as OpenAI answers a forced function), else the engine's ``stop`` / ``length``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from openai.types.chat import ChatCompletionMessageToolCallUnion

from server.generation import CompletionDelta, EngineStep, TokenLogprobInfo
from server.schemas import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Choice,
    ChoiceDeltaToolCall,
    ChoiceLogprobs,
    ChunkChoice,
    ChunkLogprobs,
    DeltaMessage,
    MessageToolCall,
    MessageToolCallFunction,
    NamedToolChoice,
    TextPart,
    TokenLogprob,
    TopLogprob,
    Usage,
    wire,
)
from server.streaming import sse_event
from server.tools import AutoToolStream, ParsedCall, parse_auto, parse_constrained


def system_fingerprint(model_name: str) -> str:
    """``fp_`` + 12 hex digits of the served model name and the server version (stable per deployment)."""
    from server import __version__

    return "fp_" + hashlib.sha256(f"{model_name}|{__version__}".encode()).hexdigest()[:12]


def tool_mode(request: ChatCompletionRequest) -> str:
    """``none`` (plain content), ``auto``, ``required`` or ``named``."""
    choice = request.effective_tool_choice
    if not request.tools or choice == "none":
        return "none"
    if isinstance(choice, NamedToolChoice):
        return "named"
    return str(choice)


def echo_prefix(request: ChatCompletionRequest) -> str:
    """vLLM's chat ``echo``: the last message's text when it is an assistant message (the reply
    continues that role), else ""."""
    if not request.echo:
        return ""
    last = request.messages[-1]
    if last.role != "assistant":
        return ""
    return "".join(p.text for p in last.content if isinstance(p, TextPart))


def token_logprobs(items: Sequence[TokenLogprobInfo]) -> list[TokenLogprob]:
    """OpenAI's per-token logprobs (``bytes`` = the token's UTF-8 bytes; -inf/NaN as -9999.0)."""
    return [
        TokenLogprob(
            token=t.token,
            logprob=_clamp(t.logprob),
            bytes=list(t.token.encode("utf-8")),
            top_logprobs=[
                TopLogprob(token=s, logprob=_clamp(lp), bytes=list(s.encode("utf-8"))) for s, lp in t.top
            ],
        )
        for t in items
    ]


def _clamp(lp: float) -> float:
    """OpenAI clients cannot parse -inf: clamp as vLLM's server does."""
    return max(lp, -9999.0) if not math.isnan(lp) else -9999.0


def finish_reason(engine_reason: str | None, mode: str, called: bool) -> str:
    """OpenAI's ``finish_reason`` of a choice (see the module docstring)."""
    if engine_reason == "length":
        return "length"
    if called and mode in ("auto", "required"):
        return "tool_calls"
    return "stop"


def usage(
    prompt_tokens: int, completion_tokens: int, cached_tokens: int | None, visual_tokens: int | None = None
) -> Usage:
    """OpenAI's ``usage``; ``prompt_tokens_details`` has ``cached_tokens`` (prefix-cache hits, when the
    engine reports them) and, for chat, OpenAI's ``image_tokens`` (729 per image / frame / view) and
    ``text_tokens`` (the rest of the prompt)."""
    details: dict[str, int] = {}
    if cached_tokens is not None:
        details["cached_tokens"] = cached_tokens
    if visual_tokens is not None:
        details["image_tokens"] = visual_tokens
        details["text_tokens"] = prompt_tokens - visual_tokens
    kwargs: dict[str, Any] = {"prompt_tokens_details": details} if details else {}
    return Usage(
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        total_tokens=prompt_tokens + completion_tokens,
        **kwargs,
    )


def prompt_logprobs_json(step: EngineStep | None) -> list[dict[str, Any] | None] | None:
    """vLLM's ``prompt_logprobs`` shape: per prompt position None, or ``{token_id: {logprob, rank,
    decoded_token}}`` with the prompt token first (None for the first position and for visual tokens)."""
    if step is None or step.prompt_logprobs is None:
        return None
    return [
        None
        if row is None
        else {str(tid): {"logprob": lp, "rank": rank, "decoded_token": text} for tid, lp, rank, text in row}
        for row in step.prompt_logprobs
    ]


def _message_calls(calls: Sequence[ParsedCall]) -> list[ChatCompletionMessageToolCallUnion]:
    return [
        MessageToolCall(
            id=c.id, type="function", function=MessageToolCallFunction(name=c.name, arguments=c.arguments)
        )
        for c in calls
    ]


@dataclass
class _ChoiceState:
    text: str = ""
    tokens: int = 0
    finish: str | None = None
    logprobs: list[TokenLogprobInfo] = field(default_factory=list)


async def build_completion(
    *,
    request: ChatCompletionRequest,
    steps: AsyncIterator[EngineStep],
    response_id: str,
    created: int,
    model: str,
    n: int,
    want_logprobs: bool,
    prompt_tokens: int,
    tokenizer: Any,
    visual_tokens: int | None = None,
) -> ChatCompletion:
    """Run ``steps`` to the end and build the ``chat.completion`` object."""
    states = [_ChoiceState() for _ in range(n)]
    cached: int | None = None
    first: EngineStep | None = None
    async for step in steps:
        if first is None:
            first = step
        prompt_tokens = step.prompt_tokens
        if step.cached_tokens is not None:
            cached = step.cached_tokens
        for d in step.deltas:
            st = states[d.index]
            st.text += d.text
            st.tokens += d.num_tokens
            if d.finish_reason is not None:
                st.finish = d.finish_reason
            if want_logprobs and d.logprobs:
                st.logprobs.extend(d.logprobs)
    mode = tool_mode(request)
    prefix = echo_prefix(request)
    choices = []
    for i, st in enumerate(states):
        content: str | None = st.text
        calls: list[ParsedCall] = []
        if mode in ("required", "named"):
            parsed = parse_constrained(request, st.text)
            if parsed:
                content, calls = None, parsed
        elif mode == "auto":
            content, calls = parse_auto(tokenizer, st.text)
        if prefix:
            content = prefix + (content or "")
        message = AssistantMessage(role="assistant", content=content, refusal=None)
        if calls:
            message = AssistantMessage(
                role="assistant", content=content, refusal=None, tool_calls=_message_calls(calls)
            )
        choices.append(
            Choice(
                index=i,
                message=message,
                logprobs=ChoiceLogprobs(content=token_logprobs(st.logprobs), refusal=None)
                if want_logprobs
                else None,
                finish_reason=finish_reason(st.finish or "stop", mode, bool(calls)),  # type: ignore[arg-type]
            )
        )
    completion_tokens = sum(st.tokens for st in states)
    extra: dict[str, Any] = {}
    plp = prompt_logprobs_json(first)
    if plp is not None:
        extra["prompt_logprobs"] = plp
    return ChatCompletion(
        id=response_id,
        object="chat.completion",
        created=created,
        model=model,
        choices=choices,
        usage=usage(prompt_tokens, completion_tokens, cached, visual_tokens),
        system_fingerprint=system_fingerprint(model),
        **extra,
    )


class ChunkWriter:
    """Builds the SSE events of one streamed chat completion (see :func:`stream_events`)."""

    def __init__(self, *, response_id: str, created: int, model: str, include_usage: bool) -> None:
        self.response_id = response_id
        self.created = created
        self.model = model
        self.include_usage = include_usage
        self.fingerprint = system_fingerprint(model)

    def chunk(self, choices: list[ChunkChoice], usage_obj: Usage | None = None) -> bytes:
        kwargs: dict[str, Any] = {}
        if self.include_usage:
            kwargs["usage"] = usage_obj
        obj = ChatCompletionChunk(
            id=self.response_id,
            object="chat.completion.chunk",
            created=self.created,
            model=self.model,
            choices=choices,
            system_fingerprint=self.fingerprint,
            **kwargs,
        )
        return sse_event(wire(obj))

    @staticmethod
    def choice(
        index: int,
        *,
        content: str | None = None,
        role: str | None = None,
        tool_calls: list[dict[str, Any]] | None = None,
        logprobs: Sequence[TokenLogprobInfo] | None = None,
        finish: str | None = None,
    ) -> ChunkChoice:
        delta: dict[str, Any] = {}
        if role is not None:
            delta["role"] = role
        if content is not None:
            delta["content"] = content
        if tool_calls:
            delta["tool_calls"] = [ChoiceDeltaToolCall.model_validate(tc) for tc in tool_calls]
        return ChunkChoice(
            index=index,
            delta=DeltaMessage(**delta),
            logprobs=ChunkLogprobs(content=token_logprobs(logprobs), refusal=None)
            if logprobs is not None
            else None,
            finish_reason=finish,  # type: ignore[arg-type]
        )


async def stream_events(
    *,
    request: ChatCompletionRequest,
    steps: AsyncIterator[EngineStep],
    writer: ChunkWriter,
    n: int,
    want_logprobs: bool,
    prompt_tokens: int,
    tokenizer: Any,
    visual_tokens: int | None = None,
) -> AsyncIterator[bytes]:
    """The chunks of a streamed completion: per choice a ``role`` chunk first (with the ``echo``
    text as its content, else ""), then content / tool-call deltas, the choice's last chunk carrying
    ``finish_reason``; with ``include_usage`` a last chunk with ``choices: []`` and ``usage`` (every
    other chunk then has ``usage: null``). Errors are the caller's (:meth:`server.chat.ChatService.stream`)."""
    mode = tool_mode(request)
    prefix = echo_prefix(request)
    auto = [AutoToolStream(tokenizer) for _ in range(n)] if mode == "auto" else None
    buffered = [_ChoiceState() for _ in range(n)] if mode in ("required", "named") else None
    called = [False] * n
    completion_tokens = 0
    cached: int | None = None
    for i in range(n):
        yield writer.chunk([writer.choice(i, role="assistant", content=prefix)])
    async for step in steps:
        prompt_tokens = step.prompt_tokens
        if step.cached_tokens is not None:
            cached = step.cached_tokens
        for d in step.deltas:
            completion_tokens += d.num_tokens
            for event in _delta_events(d, mode, auto, buffered, called, writer, request, want_logprobs):
                yield event
    if writer.include_usage:
        yield writer.chunk([], usage(prompt_tokens, completion_tokens, cached, visual_tokens))


def _delta_events(
    d: CompletionDelta,
    mode: str,
    auto: list[AutoToolStream] | None,
    buffered: list[_ChoiceState] | None,
    called: list[bool],
    writer: ChunkWriter,
    request: ChatCompletionRequest,
    want_logprobs: bool,
) -> list[bytes]:
    lps = list(d.logprobs or ()) if want_logprobs else None
    i = d.index
    if buffered is not None:
        st = buffered[i]
        st.text += d.text
        if lps:
            st.logprobs.extend(lps)
        if d.finish_reason is None:
            return []
        calls = parse_constrained(request, st.text)
        if calls:
            deltas = [
                {
                    "index": k,
                    "id": c.id,
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments},
                }
                for k, c in enumerate(calls)
            ]
            return [
                writer.chunk(
                    [
                        writer.choice(
                            i,
                            tool_calls=deltas,
                            logprobs=st.logprobs if want_logprobs else None,
                            finish=finish_reason(d.finish_reason, mode, True),
                        )
                    ]
                )
            ]
        return [
            writer.chunk(
                [
                    writer.choice(
                        i,
                        content=st.text,
                        logprobs=st.logprobs if want_logprobs else None,
                        finish=finish_reason(d.finish_reason, mode, False),
                    )
                ]
            )
        ]
    if auto is not None:
        content, tool_calls = auto[i].feed(d.text)
        events = []
        if d.finish_reason is not None:
            more_content, more_calls = auto[i].finish()
            content = (content or "") + (more_content or "") or None
            tool_calls = tool_calls + more_calls
        called[i] = called[i] or auto[i].called
        finish = finish_reason(d.finish_reason, mode, called[i]) if d.finish_reason is not None else None
        if content is not None or tool_calls or finish is not None or lps:
            events.append(
                writer.chunk(
                    [
                        writer.choice(
                            i, content=content, tool_calls=tool_calls or None, logprobs=lps, finish=finish
                        )
                    ]
                )
            )
        return events
    if not d.text and d.finish_reason is None and not lps:
        return []
    finish = finish_reason(d.finish_reason, mode, False) if d.finish_reason is not None else None
    return [writer.chunk([writer.choice(i, content=d.text, logprobs=lps, finish=finish)])]
