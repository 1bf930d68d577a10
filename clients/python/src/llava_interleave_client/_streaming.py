"""Server-sent events: a line decoder and the ``Stream`` / ``AsyncStream`` iterators.

The server sends ``data: <json>\\n\\n`` events and ends with ``data: [DONE]``. An error after the stream
has started is one ``data: {"error": {...}}`` event (then ``[DONE]``): it is raised as
:class:`~llava_interleave_client.APIStreamError`. A stream always closes its HTTP response: when it is
exhausted, when it raises, when you leave its ``with`` block or call ``close()``, and when it is
garbage-collected.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable, Generic, Iterable, Iterator, List, Optional, TypeVar

import httpx
import pydantic

from ._exceptions import (
    APIConnectionError,
    APIResponseValidationError,
    APIStreamError,
    APITimeoutError,
)

__all__ = ["ServerSentEvent", "SSEDecoder", "Stream", "AsyncStream"]

T = TypeVar("T")


@dataclass
class ServerSentEvent:
    """One decoded event: ``data`` lines joined with ``\\n``; ``event`` / ``id`` / ``retry`` if sent."""

    data: str = ""
    event: Optional[str] = None
    id: Optional[str] = None
    retry: Optional[int] = None

    def json(self) -> Any:
        """``data`` parsed as JSON (raises ``ValueError`` if it is not JSON)."""
        return json.loads(self.data)


class SSEDecoder:
    """Incremental decoder of the ``text/event-stream`` format (WHATWG HTML, "server-sent events").

    Feed it lines without their line terminators; a blank line ends an event.
    """

    def __init__(self) -> None:
        self._data: List[str] = []
        self._event: Optional[str] = None
        self._id: Optional[str] = None
        self._retry: Optional[int] = None

    def decode(self, line: str) -> Optional[ServerSentEvent]:
        """Consume one line; return the event it completes, if any."""
        if line == "":
            return self.flush()
        if line.startswith(":"):  # comment / keep-alive
            return None
        field, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._event = value
        elif field == "id":
            if "\0" not in value:
                self._id = value
        elif field == "retry":
            if value.isdigit():
                self._retry = int(value)
        return None

    def flush(self) -> Optional[ServerSentEvent]:
        """Return the pending event (if it has any field) and reset."""
        if not self._data and self._event is None and self._id is None and self._retry is None:
            return None
        sse = ServerSentEvent(data="\n".join(self._data), event=self._event, id=self._id, retry=self._retry)
        self._data, self._event, self._id, self._retry = [], None, None, None
        return sse

    def iter_events(self, lines: Iterable[str]) -> Iterator[ServerSentEvent]:
        """Decode an iterable of lines into events (a last event without a blank line is kept)."""
        for line in lines:
            sse = self.decode(line.rstrip("\r\n"))
            if sse is not None:
                yield sse
        sse = self.flush()
        if sse is not None:
            yield sse

    async def aiter_events(self, lines: AsyncIterator[str]) -> AsyncIterator[ServerSentEvent]:
        """Async version of :meth:`iter_events`."""
        async for line in lines:
            sse = self.decode(line.rstrip("\r\n"))
            if sse is not None:
                yield sse
        sse = self.flush()
        if sse is not None:
            yield sse


_DONE = object()


def _handle_event(sse: ServerSentEvent, response: httpx.Response, cast: Callable[[Any], T]) -> Any:
    """The decoded item of an event, ``_DONE`` for ``[DONE]``, ``None`` for events to skip.

    Raises:
        APIStreamError: an ``{"error": ...}`` event (or ``event: error``).
        APIResponseValidationError: data that is not JSON or not the expected shape.
    """
    data = sse.data.strip()
    if data == "[DONE]":
        return _DONE
    if not data:
        return None
    try:
        payload = json.loads(data)
    except ValueError:
        raise APIResponseValidationError(f"stream event is not JSON: {data[:200]!r}", response=response, body=data)
    if sse.event == "error" or (isinstance(payload, dict) and payload.get("error") is not None):
        err = payload.get("error") if isinstance(payload, dict) else None
        if isinstance(err, dict):
            message = str(err.get("message") or "error event in stream")
        else:
            message = str(err or payload)
            payload = {"error": {"message": message}}
        raise APIStreamError(message, response=response, body=payload)
    try:
        return cast(payload)
    except pydantic.ValidationError as exc:
        raise APIResponseValidationError(
            f"unexpected stream event: {exc}", response=response, body=payload
        ) from exc


def _truncated(response: httpx.Response) -> APIConnectionError:
    return APIConnectionError("stream ended before data: [DONE] (connection closed early)", request=response.request)


class Stream(Generic[T]):
    """Iterator over the chunks of a streamed response (``create(..., stream=True)``).

    Use it as a context manager, or just iterate it to the end: the HTTP response is closed when the
    iteration ends, raises, or the stream is closed / garbage-collected. Requests whose stream had
    started are never retried.

    Raises (while iterating):
        APIStreamError: the server sent an error event.
        APITimeoutError: no data within the read timeout (seconds).
        APIConnectionError: the connection broke, or ended without ``[DONE]``.
        APIResponseValidationError: an event that is not a valid chunk.
    """

    def __init__(self, response: httpx.Response, cast: Callable[[Any], T]) -> None:
        self.response = response
        self._cast = cast
        self._iterator = self._iter_chunks()

    def _iter_chunks(self) -> Iterator[T]:
        response = self.response
        try:
            done = False
            for sse in SSEDecoder().iter_events(response.iter_lines()):
                item = _handle_event(sse, response, self._cast)
                if item is _DONE:
                    done = True
                    break
                if item is not None:
                    yield item
            if not done:
                raise _truncated(response)
        except httpx.TimeoutException as exc:
            raise APITimeoutError(request=response.request) from exc
        except httpx.TransportError as exc:
            raise APIConnectionError(f"stream broke: {exc}", request=response.request) from exc
        finally:
            response.close()

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        return next(self._iterator)

    def __enter__(self) -> "Stream[T]":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        """Whether the HTTP response has been closed."""
        return self.response.is_closed

    def close(self) -> None:
        """Stop the stream and close the HTTP response (the server aborts the generation). Idempotent."""
        try:
            self._iterator.close()
        finally:
            self.response.close()

    def __del__(self) -> None:
        try:
            if not self.response.is_closed:
                self.close()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass


class AsyncStream(Generic[T]):
    """Async iterator over the chunks of a streamed response (``await create(..., stream=True)``).

    Use ``async with``, or iterate to the end: the HTTP response is closed when the iteration ends,
    raises, or the stream is closed with ``await stream.close()``; on garbage collection the close is
    scheduled on the running event loop. Raises the same exceptions as :class:`Stream`.
    """

    def __init__(self, response: httpx.Response, cast: Callable[[Any], T]) -> None:
        self.response = response
        self._cast = cast
        self._iterator = self._iter_chunks()

    async def _iter_chunks(self) -> AsyncIterator[T]:
        response = self.response
        try:
            done = False
            async for sse in SSEDecoder().aiter_events(response.aiter_lines()):
                item = _handle_event(sse, response, self._cast)
                if item is _DONE:
                    done = True
                    break
                if item is not None:
                    yield item
            if not done:
                raise _truncated(response)
        except httpx.TimeoutException as exc:
            raise APITimeoutError(request=response.request) from exc
        except httpx.TransportError as exc:
            raise APIConnectionError(f"stream broke: {exc}", request=response.request) from exc
        finally:
            await response.aclose()

    def __aiter__(self) -> AsyncIterator[T]:
        return self

    async def __anext__(self) -> T:
        return await self._iterator.__anext__()

    async def __aenter__(self) -> "AsyncStream[T]":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def closed(self) -> bool:
        """Whether the HTTP response has been closed."""
        return self.response.is_closed

    async def close(self) -> None:
        """Stop the stream and close the HTTP response (the server aborts the generation). Idempotent."""
        try:
            await self._iterator.aclose()  # type: ignore[attr-defined]
        finally:
            await self.response.aclose()

    def __del__(self) -> None:
        try:
            if self.response.is_closed:
                return
            loop = asyncio.get_running_loop()
        except Exception:
            return  # no running loop: nothing can be awaited; the connection is dropped with the client
        try:
            loop.create_task(self.response.aclose())
        except Exception:  # pragma: no cover - loop closing
            pass
