"""``client.chat.completions``: ``POST /v1/chat/completions``, mirroring OpenAI's signature."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Literal, Mapping, Optional, Union

from pydantic import BaseModel

from .._base_client import NOT_GIVEN, TimeoutTypes, _NotGiven
from .._streaming import AsyncStream, Stream
from ..types import ChatCompletion, ChatCompletionChunk

if TYPE_CHECKING:
    from .._base_client import AsyncAPIClient, SyncAPIClient

__all__ = ["Completions", "AsyncCompletions", "Chat", "AsyncChat", "build_chat_body"]

ImagePlacement = Literal["interleaved", "front"]


def _message_dict(message: Any) -> Dict[str, Any]:
    if isinstance(message, BaseModel):
        return message.model_dump(exclude_none=True)
    if isinstance(message, Mapping):
        return dict(message)
    raise TypeError(f"messages must be dicts (e.g. from user(...)), not {type(message).__name__}")


def build_chat_body(
    *,
    model: str,
    messages: Iterable[Any],
    max_tokens: Optional[int] = None,
    max_completion_tokens: Optional[int] = None,
    temperature: Optional[float] = None,
    top_p: Optional[float] = None,
    n: Optional[int] = None,
    seed: Optional[int] = None,
    stop: Union[str, List[str], None] = None,
    presence_penalty: Optional[float] = None,
    frequency_penalty: Optional[float] = None,
    logprobs: Optional[bool] = None,
    top_logprobs: Optional[int] = None,
    stream: bool = False,
    stream_options: Optional[Mapping[str, Any]] = None,
    image_placement: Optional[ImagePlacement] = None,
    extra_body: Optional[Mapping[str, Any]] = None,
) -> Dict[str, Any]:
    """The JSON body of a chat completion request; ``None`` arguments are left out (server defaults).

    ``extra_body`` is merged last, so it can add fields the SDK does not know (or override known ones).
    """
    body: Dict[str, Any] = {"model": model, "messages": [_message_dict(m) for m in messages]}
    optional = {
        "max_tokens": max_tokens,
        "max_completion_tokens": max_completion_tokens,
        "temperature": temperature,
        "top_p": top_p,
        "n": n,
        "seed": seed,
        "stop": stop,
        "presence_penalty": presence_penalty,
        "frequency_penalty": frequency_penalty,
        "logprobs": logprobs,
        "top_logprobs": top_logprobs,
        "stream_options": dict(stream_options) if stream_options is not None else None,
        "image_placement": image_placement,
    }
    body.update({k: v for k, v in optional.items() if v is not None})
    if stream:
        body["stream"] = True
    if extra_body:
        body.update(extra_body)
    return body


class Completions:
    """``client.chat.completions``."""

    def __init__(self, client: "SyncAPIClient") -> None:
        self._client = client

    def create(
        self,
        *,
        model: str,
        messages: Iterable[Any],
        max_tokens: Optional[int] = None,
        max_completion_tokens: Optional[int] = None,
        temperature: Optional[float] = None,
        top_p: Optional[float] = None,
        n: Optional[int] = None,
        seed: Optional[int] = None,
        stop: Union[str, List[str], None] = None,
        presence_penalty: Optional[float] = None,
        frequency_penalty: Optional[float] = None,
        logprobs: Optional[bool] = None,
        top_logprobs: Optional[int] = None,
        stream: bool = False,
        stream_options: Optional[Mapping[str, Any]] = None,
        image_placement: Optional[ImagePlacement] = None,
        extra_body: Optional[Mapping[str, Any]] = None,
        extra_headers: Optional[Mapping[str, str]] = None,
        timeout: TimeoutTypes | _NotGiven = NOT_GIVEN,
        max_retries: int | _NotGiven = NOT_GIVEN,
    ) -> Union[ChatCompletion, Stream[ChatCompletionChunk]]:
        """Create a chat completion (``POST /chat/completions``).

        Args:
            model: the served model name (see ``client.models.list()``).
            messages: dicts such as ``user("Describe", image("a.png"))``, ``system("...")``.
            max_tokens / max_completion_tokens ... top_logprobs: OpenAI's sampling fields; ``None`` means
                the server default. Visual tokens (729 per image, frame or view) + text + ``max_tokens``
                must fit the context, or the server answers 400.
            stream: return a :class:`Stream` of :class:`ChatCompletionChunk` instead of a
                :class:`ChatCompletion`; ``stream_options={"include_usage": True}`` adds a usage chunk.
            image_placement: ``"interleaved"`` (server default: each image where its part stands) or
                ``"front"`` (all visual parts of a message before its text, like the HF chat template).
            extra_body: more JSON fields, merged into the body last.
            extra_headers: more HTTP headers for this request.
            timeout: seconds (or an ``httpx.Timeout``) for this request instead of the client's.
            max_retries: retries for this request instead of the client's.

        Returns:
            :class:`ChatCompletion`, or a :class:`Stream` when ``stream=True``.

        Raises:
            BadRequestError, AuthenticationError, ... (an :class:`APIStatusError` per status),
            APIConnectionError, APITimeoutError, APIResponseValidationError; while iterating a stream also
            APIStreamError.
        """
        body = build_chat_body(
            model=model, messages=messages, max_tokens=max_tokens, max_completion_tokens=max_completion_tokens,
            temperature=temperature, top_p=top_p, n=n, seed=seed, stop=stop, presence_penalty=presence_penalty,
            frequency_penalty=frequency_penalty, logprobs=logprobs, top_logprobs=top_logprobs, stream=stream,
            stream_options=stream_options, image_placement=image_placement, extra_body=extra_body,
        )
        return self._client.request(
            "POST",
            "/chat/completions",
            body=body,
            cast=ChatCompletionChunk.model_validate if stream else ChatCompletion.model_validate,
            stream=stream,
            extra_headers=extra_headers,
            timeout=timeout,
            max_retries=max_retries,
        )


class AsyncCompletions:
    """``client.chat.completions`` of the :class:`AsyncClient`."""

    def __init__(self, client: "AsyncAPIClient") -> None:
        self._client = client

    async def create(
        self,
        *,
        model: str,
        messages: Iterable[Any],
        max_tokens: Optional[int] = None,
        max_completion_tokens: Optional[int] = None,
        temperature: Optional[float] = None,
        top_p: Optional[float] = None,
        n: Optional[int] = None,
        seed: Optional[int] = None,
        stop: Union[str, List[str], None] = None,
        presence_penalty: Optional[float] = None,
        frequency_penalty: Optional[float] = None,
        logprobs: Optional[bool] = None,
        top_logprobs: Optional[int] = None,
        stream: bool = False,
        stream_options: Optional[Mapping[str, Any]] = None,
        image_placement: Optional[ImagePlacement] = None,
        extra_body: Optional[Mapping[str, Any]] = None,
        extra_headers: Optional[Mapping[str, str]] = None,
        timeout: TimeoutTypes | _NotGiven = NOT_GIVEN,
        max_retries: int | _NotGiven = NOT_GIVEN,
    ) -> Union[ChatCompletion, AsyncStream[ChatCompletionChunk]]:
        """Async version of :meth:`Completions.create` (an :class:`AsyncStream` when ``stream=True``)."""
        body = build_chat_body(
            model=model, messages=messages, max_tokens=max_tokens, max_completion_tokens=max_completion_tokens,
            temperature=temperature, top_p=top_p, n=n, seed=seed, stop=stop, presence_penalty=presence_penalty,
            frequency_penalty=frequency_penalty, logprobs=logprobs, top_logprobs=top_logprobs, stream=stream,
            stream_options=stream_options, image_placement=image_placement, extra_body=extra_body,
        )
        return await self._client.request(
            "POST",
            "/chat/completions",
            body=body,
            cast=ChatCompletionChunk.model_validate if stream else ChatCompletion.model_validate,
            stream=stream,
            extra_headers=extra_headers,
            timeout=timeout,
            max_retries=max_retries,
        )


class Chat:
    """``client.chat``; holds :attr:`completions`."""

    def __init__(self, client: "SyncAPIClient") -> None:
        self.completions = Completions(client)


class AsyncChat:
    """``client.chat`` of the :class:`AsyncClient`; holds :attr:`completions`."""

    def __init__(self, client: "AsyncAPIClient") -> None:
        self.completions = AsyncCompletions(client)
