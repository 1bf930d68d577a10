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

import time
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from server.errors import APIError, format_loc, invalid_request

# ------------------------------------------------------------------------------------------------
# Request
# ------------------------------------------------------------------------------------------------


class _Lenient(BaseModel):
    """Unknown fields are ignored, as OpenAI-compatible servers do for forward compatibility."""

    model_config = ConfigDict(extra="ignore")


class TextPart(_Lenient):
    type: Literal["text"]
    text: str


class ImageURL(_Lenient):
    url: str = Field(min_length=1)
    detail: str | None = None


class ImageURLPart(_Lenient):
    type: Literal["image_url"]
    image_url: ImageURL

    @field_validator("image_url", mode="before")
    @classmethod
    def _bare_url(cls, v: Any) -> Any:
        return {"url": v} if isinstance(v, str) else v


class VideoURL(_Lenient):
    url: str = Field(min_length=1)
    num_frames: int | None = Field(None, ge=1, description="Frames to sample uniformly; server default 16.")
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


ContentPart = Annotated[
    Union[TextPart, ImageURLPart, VideoURLPart, SceneViewsPart], Field(discriminator="type")
]
PART_TYPES = ("text", "image_url", "video_url", "scene_views")
VISUAL_PART_TYPES = ("image_url", "video_url", "scene_views")


class ChatMessage(_Lenient):
    role: Literal["system", "developer", "user", "assistant"]
    content: list[ContentPart]
    name: str | None = None

    @field_validator("content", mode="before")
    @classmethod
    def _normalize_content(cls, v: Any) -> Any:
        if v is None:
            return []
        if isinstance(v, str):
            return [{"type": "text", "text": v}]
        if not isinstance(v, list):
            raise ValueError("content must be a string or a list of content parts")
        return v


class StreamOptions(_Lenient):
    include_usage: bool = False


class ChatCompletionRequest(_Lenient):
    """The body of ``POST /v1/chat/completions``."""

    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    n: int = Field(1, ge=1, le=16)
    seed: int | None = Field(None, ge=-(2**63), le=2**63 - 1)  # int64, as OpenAI
    stop: list[str] | None = Field(None, max_length=4)
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    logprobs: bool | None = False
    top_logprobs: int | None = Field(None, ge=0, le=20)
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    image_placement: Literal["interleaved", "front"] = "interleaved"
    user: str | None = None

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

    @model_validator(mode="after")
    def _cross_field(self) -> ChatCompletionRequest:
        if self.top_logprobs is not None and self.top_logprobs > 0 and not self.logprobs:
            raise ValueError("top_logprobs requires logprobs: true")
        if self.stream_options is not None and not self.stream:
            raise ValueError("stream_options is only allowed with stream: true")
        return self

    @property
    def requested_max_tokens(self) -> int | None:
        """``max_completion_tokens`` (the newer name) or ``max_tokens``, None when neither is given."""
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens

    @property
    def include_usage(self) -> bool:
        return bool(self.stream and self.stream_options and self.stream_options.include_usage)


_CROSS_FIELD_PARAMS = {
    "top_logprobs requires": "top_logprobs",
    "stream_options is only": "stream_options",
}


def _clean_loc(loc: tuple[Any, ...]) -> list[str | int]:
    """Drop the discriminator tags pydantic inserts after ``content[i]``."""
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
        out.append(item)
    return out


def parse_chat_request(body: Any) -> ChatCompletionRequest:
    """Validate a decoded JSON body.

    Raises:
        APIError: 400 naming the first invalid field in ``param``.
    """
    if not isinstance(body, dict):
        raise invalid_request("The request body must be a JSON object.")
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
        return invalid_request("'messages' is required and must contain at least one message.", param="messages")
    param = format_loc(_clean_loc(loc))
    more = f" ({len(errors) - 1} more error(s))" if len(errors) > 1 else ""
    return invalid_request(f"Invalid value for '{param}': {msg}{more}", param=param)


# ------------------------------------------------------------------------------------------------
# Response
# ------------------------------------------------------------------------------------------------


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None = None


class TokenLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None = None
    top_logprobs: list[TopLogprob] = Field(default_factory=list)


class ChoiceLogprobs(BaseModel):
    content: list[TokenLogprob] | None = None


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None = None


class Choice(BaseModel):
    index: int
    message: AssistantMessage
    logprobs: ChoiceLogprobs | None = None
    finish_reason: Literal["stop", "length"] | None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[Choice]
    usage: Usage
    system_fingerprint: str | None = None


class DeltaMessage(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    index: int
    delta: DeltaMessage
    logprobs: ChoiceLogprobs | None = None
    finish_reason: Literal["stop", "length"] | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None
    system_fingerprint: str | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "llava-interleave-serve"
    max_model_len: int | None = None


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
