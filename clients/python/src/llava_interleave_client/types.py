"""Typed response objects (pydantic v2), field-compatible with OpenAI's chat completion schema.

Unknown fields sent by the server are kept (``extra="allow"``), so a newer server never breaks an older
client; read them with ``obj.model_extra`` or ``getattr``.
"""

from __future__ import annotations

from typing import Any, Iterator, List, Literal, Optional

from pydantic import BaseModel, ConfigDict

__all__ = [
    "TopLogprob",
    "ChatCompletionTokenLogprob",
    "ChoiceLogprobs",
    "ChatCompletionMessage",
    "Choice",
    "PromptTokensDetails",
    "CompletionTokensDetails",
    "Usage",
    "ChatCompletion",
    "ChoiceDelta",
    "ChunkChoice",
    "ChatCompletionChunk",
    "Model",
    "ModelList",
]


class _Base(BaseModel):
    model_config = ConfigDict(extra="allow", protected_namespaces=())


class TopLogprob(_Base):
    """One of the most likely tokens at a position, with its log probability."""

    token: str
    logprob: float
    bytes: Optional[List[int]] = None


class ChatCompletionTokenLogprob(_Base):
    """Log probability of one sampled token, with the ``top_logprobs`` alternatives."""

    token: str
    logprob: float
    bytes: Optional[List[int]] = None
    top_logprobs: List[TopLogprob] = []


class ChoiceLogprobs(_Base):
    """Per-token log probabilities of a choice (present when the request set ``logprobs=True``)."""

    content: Optional[List[ChatCompletionTokenLogprob]] = None


class ChatCompletionMessage(_Base):
    """The assistant message of a non-streamed choice."""

    role: Literal["assistant"] = "assistant"
    content: Optional[str] = None


class Choice(_Base):
    """One of the ``n`` answers of a :class:`ChatCompletion`."""

    index: int
    message: ChatCompletionMessage
    finish_reason: Optional[str] = None
    logprobs: Optional[ChoiceLogprobs] = None


class PromptTokensDetails(_Base):
    """Breakdown of the prompt tokens, when the server reports it."""

    cached_tokens: Optional[int] = None


class CompletionTokensDetails(_Base):
    """Breakdown of the completion tokens, when the server reports it."""

    reasoning_tokens: Optional[int] = None


class Usage(_Base):
    """Token counts of a request. Every image (video frame, scene view) costs 729 prompt tokens."""

    prompt_tokens: int
    completion_tokens: int = 0
    total_tokens: int
    prompt_tokens_details: Optional[PromptTokensDetails] = None
    completion_tokens_details: Optional[CompletionTokensDetails] = None


class ChatCompletion(_Base):
    """A non-streamed response of ``POST /v1/chat/completions``."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: List[Choice]
    usage: Optional[Usage] = None
    system_fingerprint: Optional[str] = None


class ChoiceDelta(_Base):
    """The increment of a streamed choice: the role (first chunk) and/or a piece of content."""

    role: Optional[str] = None
    content: Optional[str] = None


class ChunkChoice(_Base):
    """One choice inside a :class:`ChatCompletionChunk`."""

    index: int
    delta: ChoiceDelta
    finish_reason: Optional[str] = None
    logprobs: Optional[ChoiceLogprobs] = None


class ChatCompletionChunk(_Base):
    """One event of a streamed response.

    With ``stream_options={"include_usage": True}`` the last chunk has ``choices == []`` and carries
    ``usage``; every other chunk has ``usage is None``.
    """

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: List[ChunkChoice]
    usage: Optional[Usage] = None
    system_fingerprint: Optional[str] = None


class Model(_Base):
    """A model served by the server (``GET /v1/models``)."""

    id: str
    object: Literal["model"] = "model"
    created: Optional[int] = None
    owned_by: Optional[str] = None


class ModelList(_Base):
    """The answer of ``GET /v1/models``; iterating over it yields its :class:`Model` objects."""

    object: Literal["list"] = "list"
    data: List[Model]

    def __iter__(self) -> Iterator[Model]:  # type: ignore[override]
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> Model:
        return self.data[index]


def _dump(obj: Any) -> Any:
    """``model_dump(exclude_none=True)`` for pydantic objects, the object itself otherwise."""
    if isinstance(obj, BaseModel):
        return obj.model_dump(exclude_none=True)
    return obj
