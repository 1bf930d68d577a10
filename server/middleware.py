"""Pure-ASGI middleware: request ids, the request body limit (413 before parsing) and read deadline
(408), the end-of-request hook that releases admission, and HTTP metrics.

Pure ASGI (not ``BaseHTTPMiddleware``) so streamed responses pass through untouched and
``http.disconnect`` still reaches the endpoint after the body has been read.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.errors import APIError, internal_error, payload_too_large, request_timeout
from server.logs import REQUEST_ERROR_KEY, REQUEST_ID, REQUEST_STATS, RequestStats, log_request
from server.metrics import ServerMetrics

logger = logging.getLogger(__name__)

REQUEST_ID_HEADER = "x-request-id"
_VALID_REQUEST_ID = re.compile(r"^[\x21-\x7e]{1,200}$")  # visible ASCII, no spaces
_ENDPOINTS = (
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/models",
    "/tokenize",
    "/detokenize",
    "/health",
    "/ready",
    "/metrics",
)
GENERATION_PATHS = frozenset({"/v1/chat/completions", "/v1/completions"})
"""Requests that get one ``request`` log line each (:func:`server.logs.log_request`)."""


def _endpoint_label(path: str) -> str:
    return path if path in _ENDPOINTS else "other"


async def send_error(send: Send, err: APIError, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """Send ``err`` as a complete JSON response."""
    body = json.dumps(err.to_dict()).encode()
    await send(
        {
            "type": "http.response.start",
            "status": err.status_code,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


class RequestContextMiddleware:
    """Per HTTP request: an ``x-request-id`` response header (the client's, if valid, else a new
    one; also in ``scope["state"]["request_id"]``), the body limit, and request metrics.

    Args:
        app: the wrapped ASGI app.
        max_body_bytes: larger bodies get 413 — from ``Content-Length`` before reading, or while
            counting streamed (chunked) bytes — and are never parsed.
        metrics: where to count requests.
        body_timeout_seconds: the whole body must arrive within this many seconds, else 408
            (a slow upload holds no admission share while it uploads).
        on_request_end: called with the ASGI scope once the response has been sent (streams: after
            the last event) or the request failed; releases what the request was admitted with.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        metrics: ServerMetrics,
        body_timeout_seconds: float = 60.0,
        on_request_end: Callable[[Scope], None] | None = None,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics
        self.body_timeout_seconds = body_timeout_seconds
        self.on_request_end = on_request_end

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        headers = dict(scope.get("headers") or [])
        client_id = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = client_id if _VALID_REQUEST_ID.match(client_id) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        context_token = REQUEST_ID.set(request_id)  # every line logged for this request names it
        stats = RequestStats() if scope.get("path") in GENERATION_PATHS else None
        stats_token = REQUEST_STATS.set(stats)  # filled in by the chat service
        rid_header = (REQUEST_ID_HEADER.encode(), request_id.encode("latin-1"))
        endpoint = _endpoint_label(scope.get("path", ""))
        status = {"code": 500, "started": False}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                status["started"] = True
                message = dict(message)
                message["headers"] = [
                    *[(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"],
                    rid_header,
                ]
            await send(message)

        try:
            try:
                async with asyncio.timeout(self.body_timeout_seconds):
                    replay = await self._read_body(scope, receive, headers)
            except TimeoutError:
                self.metrics.timed_out.labels(phase="body").inc()
                replay = request_timeout(
                    f"The request body did not arrive within {self.body_timeout_seconds:g} seconds."
                )
            if isinstance(replay, APIError):
                await send_error(send_wrapper, replay)
                return
            await self.app(scope, replay, send_wrapper)
        except Exception:
            logger.exception("unhandled error in %s %s", scope.get("method"), scope.get("path"))
            if not status["started"]:
                await send_error(send_wrapper, internal_error())
        finally:
            if self.on_request_end is not None:
                self.on_request_end(scope)
            self.metrics.requests.labels(endpoint=endpoint, status=str(status["code"])).inc()
            duration = time.perf_counter() - start
            self.metrics.request_duration.labels(endpoint=endpoint).observe(duration)
            if stats is not None:
                log_request(
                    method=scope.get("method", ""),
                    path=scope["path"],
                    status=status["code"],
                    duration_seconds=duration,
                    stats=stats,
                    error=scope.get("state", {}).get(REQUEST_ERROR_KEY),
                )
            REQUEST_STATS.reset(stats_token)
            REQUEST_ID.reset(context_token)

    async def _read_body(
        self, scope: Scope, receive: Receive, headers: dict[bytes, bytes]
    ) -> Receive | APIError:
        """Read the whole body (bounded) and return a ``receive`` that replays it, then passes on."""
        if scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            return receive
        limit = self.max_body_bytes
        length = headers.get(b"content-length")
        if length is not None:
            try:
                if int(length) > limit:
                    return payload_too_large(limit)
            except ValueError:
                pass
        chunks: list[bytes] = []
        total = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return _replay([], message, receive)
            body = message.get("body", b"")
            total += len(body)
            if total > limit:
                return payload_too_large(limit)
            chunks.append(body)
            if not message.get("more_body", False):
                break
        return _replay(chunks, None, receive)


def _replay(chunks: list[bytes], disconnect: Message | None, receive: Receive) -> Receive:
    sent = False

    async def replay_receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            if disconnect is not None:
                return disconnect
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        return await receive()

    return replay_receive
