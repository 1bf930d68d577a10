"""``Client`` / ``AsyncClient``: ``openai.OpenAI`` / ``openai.AsyncOpenAI`` with this server's defaults.

Everything else (requests, retries, timeouts, errors, streams, response types) is openai's. The one
behaviour added: a stream whose body ends before ``data: [DONE]`` raises ``openai.APIConnectionError``
instead of ending quietly, so an answer cut by a proxy or a dying server never looks complete.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import httpx2  # openai's HTTP library (a dependency of openai>=3)
import openai

if TYPE_CHECKING:
    from openai._streaming import ServerSentEvent, SSEBytesDecoder, SSEDecoder

__all__ = ["Client", "AsyncClient", "DEFAULT_BASE_URL", "NO_API_KEY"]

DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"
NO_API_KEY = "EMPTY"
"""Sent as the bearer token when no key is given (openai requires one); a server without
``--api-key`` ignores it."""


def _defaults(base_url: Any, api_key: Any) -> dict[str, Any]:
    """``base_url``: given, else ``$INTERLEAVE_BASE_URL``, else :data:`DEFAULT_BASE_URL`; ``api_key``:
    given, else ``$INTERLEAVE_API_KEY``, else :data:`NO_API_KEY` (``$OPENAI_*`` are never read for these,
    so an OpenAI key is not sent to this server)."""
    return {
        "base_url": base_url or os.environ.get("INTERLEAVE_BASE_URL") or DEFAULT_BASE_URL,
        "api_key": api_key or os.environ.get("INTERLEAVE_API_KEY") or NO_API_KEY,
    }


def _truncated() -> httpx2.RemoteProtocolError:
    # openai's Stream turns transport errors into APIConnectionError (this one is its __cause__).
    return httpx2.RemoteProtocolError("the stream ended before data: [DONE] (connection closed early)")


class _DoneRequired:
    """openai's SSE decoder, raising when the bytes end before a ``data: [DONE]`` event."""

    def __init__(self, decoder: SSEDecoder | SSEBytesDecoder) -> None:
        self._decoder = decoder

    def iter_bytes(self, iterator: Iterator[bytes]) -> Iterator[ServerSentEvent]:
        for sse in self._decoder.iter_bytes(iterator):
            yield sse
            if sse.data.startswith("[DONE]"):
                return
        raise _truncated()

    async def aiter_bytes(self, iterator: AsyncIterator[bytes]) -> AsyncIterator[ServerSentEvent]:
        async for sse in self._decoder.aiter_bytes(iterator):
            yield sse
            if sse.data.startswith("[DONE]"):
                return
        raise _truncated()


class Client(openai.OpenAI):
    """``openai.OpenAI`` for the LLaVA-NeXT-Interleave server; same arguments and methods.

    ``base_url`` defaults to ``$INTERLEAVE_BASE_URL`` or ``http://127.0.0.1:8000/v1`` and ``api_key`` to
    ``$INTERLEAVE_API_KEY`` (or :data:`NO_API_KEY`). Timeouts (600 s, 5 s to connect) and retries
    (``max_retries=2``: connection errors, timeouts, 408 / 409 / 429 / 5xx, honouring ``retry-after``)
    are openai's. Streams raise ``openai.APIConnectionError`` if they end before ``data: [DONE]``.
    """

    if not TYPE_CHECKING:  # type checkers see openai.OpenAI's own (typed) signature

        def __init__(self, *, base_url=None, api_key=None, **kwargs):
            super().__init__(**_defaults(base_url, api_key), **kwargs)

    def _make_sse_decoder(self) -> SSEBytesDecoder:
        return _DoneRequired(super()._make_sse_decoder())


class AsyncClient(openai.AsyncOpenAI):
    """``openai.AsyncOpenAI`` with the defaults and the ``[DONE]`` check of :class:`Client`."""

    if not TYPE_CHECKING:

        def __init__(self, *, base_url=None, api_key=None, **kwargs):
            super().__init__(**_defaults(base_url, api_key), **kwargs)

    def _make_sse_decoder(self) -> SSEBytesDecoder:
        return _DoneRequired(super()._make_sse_decoder())
