"""Server-sent events and client-disconnect handling.

:class:`SSEResponse` sends ``data: <json>\\n\\n`` events from an async iterator while it watches the
connection: when the client goes away it stops the iterator (the engine request is aborted by the
iterator's cleanup and by ``on_disconnect``) instead of waiting for the next write to fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

logger = logging.getLogger(__name__)

T = TypeVar("T")

DONE = b"data: [DONE]\n\n"


def sse_event(payload: dict[str, Any]) -> bytes:
    """One SSE event ``data: <compact json>\\n\\n``."""
    return b"data: " + json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


class ClientDisconnected(Exception):
    """The client closed the connection before the response was complete."""


async def wait_for_disconnect(receive: Receive) -> None:
    """Return when the ASGI server reports ``http.disconnect`` (the request body was already read)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def _before(coro: Awaitable[T], deadline: float) -> T:
    # asyncio.timeout_at, not asyncio.wait_for: on Python 3.11 wait_for returns the result instead
    # of raising when it is cancelled just as ``coro`` completes, and the cancellation is lost.
    async with asyncio.timeout_at(deadline):
        return await coro


async def run_unless_disconnected(
    receive: Receive, coro: Awaitable[T], *, deadline: float | None = None
) -> T:
    """Await ``coro`` but cancel it if the client disconnects first, or once the event loop's clock
    (``loop.time()``, seconds) passes ``deadline``.

    Raises:
        ClientDisconnected: the client went away; ``coro`` was cancelled (its cleanup ran).
        TimeoutError: ``deadline`` passed first; ``coro`` was cancelled.
    """
    task = asyncio.ensure_future(coro if deadline is None else _before(coro, deadline))
    watcher = asyncio.ensure_future(wait_for_disconnect(receive))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        watcher.cancel()
        raise
    if task.done():
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    raise ClientDisconnected()


class SSEResponse(Response):
    """An ASGI response streaming ``events`` (already-encoded SSE bytes) as ``text/event-stream``.

    Args:
        events: the event iterator; it is closed (``aclose``) however the response ends, so its
            ``finally`` blocks run promptly.
        headers: extra response headers.
        on_disconnect: awaited once if the client disconnects before the last event (e.g. to abort
            the engine request).
    """

    media_type = "text/event-stream"

    def __init__(
        self,
        events: AsyncIterator[bytes],
        *,
        headers: dict[str, str] | None = None,
        on_disconnect: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.events = events
        self.status_code = 200
        self.background = None
        self.raw_headers = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-cache"),
            (b"x-accel-buffering", b"no"),
        ] + [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
        self.on_disconnect = on_disconnect

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        pump = asyncio.ensure_future(self._pump(send, self.raw_headers))
        watcher = asyncio.ensure_future(wait_for_disconnect(receive))
        try:
            await asyncio.wait({pump, watcher}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            pump.cancel()
            watcher.cancel()
            raise
        if pump.done():
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            exc = pump.exception()
            if exc is None:
                return
            if isinstance(exc, OSError):  # the write failed: the client is gone
                await self._client_gone()
                return
            raise exc
        # The client disconnected while we were producing: abort first, so the events end even if
        # a cancellation is lost somewhere below the pump, then wait for the pump to stop.
        pump.cancel()
        await self._client_gone()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await pump

    async def _pump(self, send: Send, raw_headers: list[tuple[bytes, bytes]]) -> None:
        try:
            await send({"type": "http.response.start", "status": 200, "headers": raw_headers})
            async for chunk in self.events:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            aclose = getattr(self.events, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()

    async def _client_gone(self) -> None:
        if self.on_disconnect is not None:
            try:
                await self.on_disconnect()
            except Exception:  # never let cleanup fail the connection handler
                logger.exception("on_disconnect failed")
