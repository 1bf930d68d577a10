"""HTTP endpoints: ``POST /v1/chat/completions``, ``GET /v1/models`` (and ``/v1/models/{id}``), ``/health``, ``/ready``, ``/metrics``."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from server.auth import check_api_key
from server.chat import ChatService
from server.errors import APIError, gateway_timeout, invalid_request, service_unavailable
from server.lifecycle import AppState
from server.schemas import ModelCard, ModelList, parse_chat_request, wire
from server.streaming import ClientDisconnected, SSEResponse, run_unless_disconnected

router = APIRouter()

T = TypeVar("T")

ADMISSION_TICKET = "admission_ticket"
"""Key of the request's :class:`server.admission.Ticket` in the ASGI scope's state."""

CLIENT_CLOSED = 499
"""Status recorded (never received) when the client went away first (nginx's convention)."""


def app_state(request: Request) -> AppState:
    return request.app.state.interleave


@router.get("/health")
async def health(request: Request) -> JSONResponse:
    """Liveness: 200 while the process can serve (also while loading); 503 once the engine died."""
    st = app_state(request)
    if st.engine is not None and st.engine.is_dead:
        return JSONResponse({"status": "engine_dead"}, status_code=503)
    if st.phase in ("failed", "engine_dead"):
        return JSONResponse({"status": st.phase, "error": st.load_error}, status_code=503)
    return JSONResponse({"status": "ok"})


@router.get("/ready")
async def ready(request: Request) -> JSONResponse:
    """Readiness: 200 once the model is loaded; 503 while loading, draining, or after a failure."""
    st = app_state(request)
    if st.is_ready:
        return JSONResponse({"status": "ready", "model": st.served_model_name})
    phase = "engine_dead" if st.phase == "ready" else st.phase
    return JSONResponse({"status": phase}, status_code=503)


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    """Prometheus exposition of the server's and vLLM's metrics."""
    body, content_type = app_state(request).metrics.render()
    return Response(body, media_type=content_type)


@router.get("/v1/models")
async def list_models(request: Request) -> JSONResponse:
    st = app_state(request)
    check_api_key(request, st.settings.api_key)
    cards = []
    if st.engine is not None:
        cards.append(
            ModelCard(
                id=st.engine.served_model_name, created=st.started_at, max_model_len=st.engine.max_model_len
            )
        )
    return JSONResponse(ModelList(data=cards).model_dump(mode="json", exclude_none=True))


@router.get("/v1/models/{model_id:path}")
async def retrieve_model(model_id: str, request: Request) -> JSONResponse:
    """One model card (``client.models.retrieve``); 404 ``model_not_found`` for another name."""
    st = app_state(request)
    check_api_key(request, st.settings.api_key)
    if st.engine is None or model_id != st.engine.served_model_name:
        raise APIError(404, f"The model '{model_id}' does not exist.", param="model", code="model_not_found")
    card = ModelCard(
        id=st.engine.served_model_name, created=st.started_at, max_model_len=st.engine.max_model_len
    )
    return JSONResponse(card.model_dump(mode="json", exclude_none=True))


def _lone_surrogate_path(value: object, path: str = "") -> str | None:
    """Path (``messages[0].content``) of the first string holding a lone surrogate, "" for the
    body itself, None when every string is valid Unicode (JSON allows escapes like ``\\ud800``)."""
    stack: list[tuple[object, str]] = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            if item.isascii():  # O(1) in CPython: no surrogate; skips copying a 12 MB data: URL
                continue
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return where
        elif isinstance(item, dict):
            for k, v in reversed(list(item.items())):
                key_path = f"{where}.{k}" if where else str(k)
                if isinstance(k, str) and _lone_surrogate_path(k) is not None:
                    return where
                stack.append((v, key_path))
        elif isinstance(item, list):
            stack.extend((v, f"{where}[{i}]") for i, v in reversed(list(enumerate(item))))
    return None


def require_service(st: AppState) -> ChatService:
    """The chat service if the server takes generation requests now.

    Raises:
        APIError: 503 while draining (``Retry-After``: retry on another replica), after the engine
            died (no ``Retry-After``: this process is exiting), or while the model loads.
    """
    if st.phase == "draining":
        st.metrics.rejected.labels(reason="draining").inc()
        raise service_unavailable("The server is shutting down; retry on another replica.")
    if st.phase == "engine_dead" or (st.engine is not None and st.engine.is_dead):
        st.metrics.rejected.labels(reason="engine_dead").inc()
        err = service_unavailable(
            f"The inference engine failed ({st.load_error or 'engine dead'}); this server process is exiting "
            "so that its supervisor restarts it."
        )
        err.code, err.headers = "engine_dead", None
        raise err
    if st.service is None or not st.is_ready:
        raise service_unavailable("The model is not ready yet; retry shortly.")
    return st.service


async def read_json_body(request: Request) -> object:
    """The request body parsed as JSON.

    Raises:
        APIError: 400 for invalid JSON, JSON nested too deeply, or a lone UTF-16 surrogate escape.
    """
    raw = await request.body()
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise invalid_request(f"The request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise invalid_request("The request body is not valid JSON: nested too deeply.") from None
    bad = _lone_surrogate_path(body)
    if bad is not None:
        raise invalid_request(
            f"{bad or 'The body'} contains a lone UTF-16 surrogate escape (\\ud800-\\udfff), "
            "which is not valid Unicode text.",
            param=bad or None,
        )
    return body


def admit(request: Request, st: AppState, images: int, body_bytes: int) -> None:
    """Admit the request (its share is released by the middleware when the response is done).

    Raises:
        APIError: 503 ``server_overloaded`` past an admission bound.
    """
    request.scope.setdefault("state", {})[ADMISSION_TICKET] = st.admission.admit(images, body_bytes)


def release_admission(st: AppState, scope: MutableMapping[str, Any]) -> None:
    """The middleware's end-of-request hook: give back the request's admission share, if any."""
    ticket = scope.get("state", {}).pop(ADMISSION_TICKET, None)
    if ticket is not None:
        st.admission.release(ticket)


def _timed_out(st: AppState, seconds: float) -> APIError:
    st.metrics.timed_out.labels(phase="request").inc()
    return gateway_timeout(
        f"The request did not finish within its deadline of {seconds:g} seconds (--request-timeout-seconds)."
    )


async def _until_deadline(
    steps: AsyncIterator[T], deadline: float, on_timeout: Callable[[], APIError]
) -> AsyncIterator[T]:
    """``steps``, raising ``on_timeout()`` once ``deadline`` (``loop.time()``) has passed."""
    loop = asyncio.get_running_loop()
    while True:
        if loop.time() >= deadline:
            raise on_timeout()
        try:
            # asyncio.timeout_at, not asyncio.wait_for: on Python 3.11 wait_for drops a cancellation
            # that arrives as the step completes, so the stream of a client that went away (its
            # pump is cancelled, server.streaming) would run on to max_tokens.
            async with asyncio.timeout_at(deadline):
                step = await anext(steps)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise on_timeout() from None
        yield step


async def prepare_within_deadline(
    request: Request, st: AppState, prepare: Awaitable[T], deadline: float
) -> T:
    """Await ``prepare`` (media fetch, decode, prompt build) for ``/v1/chat/completions`` and
    ``/v1/completions``, cancelled if the client disconnects or ``deadline`` (``loop.time()``) passes.

    Raises:
        ClientDisconnected: the client went away (the caller answers 499).
        APIError: 504 when the deadline passed first.
    """
    try:
        return await run_unless_disconnected(request.receive, prepare, deadline=deadline)
    except TimeoutError:
        raise _timed_out(st, st.settings.request_timeout_seconds) from None


async def run_generation(
    request: Request,
    st: AppState,
    service: ChatService,
    prepared: Any,
    *,
    stream: bool,
    deadline: float,
    complete: Callable[[], Awaitable[Any]],
    events: Callable[[AsyncIterator[Any], Any], AsyncIterator[bytes]],
) -> Response:
    """Run a prepared generation request to its response, within its deadline, for both
    ``/v1/chat/completions`` and ``/v1/completions``.

    Non-streaming: ``complete()`` gives the response object (sent as JSON). Streaming: the first
    engine output is awaited before answering 200 (so errors up to the prefill are ordinary HTTP
    errors), then ``events(steps, first)`` gives the SSE events. A client that disconnects has its
    engine request aborted (status 499 recorded); past ``deadline`` (``loop.time()``) the engine
    request is aborted and the answer is 504, or an SSE error event once streaming.

    Raises:
        APIError: 504 when the deadline passes before the response (or first output) is ready.
    """
    timeout_s = st.settings.request_timeout_seconds

    async def within_deadline(awaitable: Awaitable[T]) -> T:
        try:
            return await run_unless_disconnected(request.receive, awaitable, deadline=deadline)
        except ClientDisconnected:
            await service.abort(prepared)
            raise
        except TimeoutError:
            await service.abort(prepared)
            raise _timed_out(st, timeout_s) from None

    try:
        if not stream:
            return JSONResponse(wire(await within_deadline(complete())))
        steps = service.generate(prepared)
        first = await within_deadline(anext(steps, None))
    except ClientDisconnected:
        return Response(status_code=CLIENT_CLOSED)

    async def abort() -> None:
        await service.abort(prepared)

    def stream_timed_out() -> APIError:
        asyncio.ensure_future(service.abort(prepared))
        return _timed_out(st, timeout_s)

    bounded = _until_deadline(steps, deadline, stream_timed_out)
    return SSEResponse(events(bounded, first), on_disconnect=abort)


@router.post("/v1/chat/completions")
async def chat_completions(request: Request) -> Response:
    st = app_state(request)
    check_api_key(request, st.settings.api_key)
    arrival = time.perf_counter()
    service = require_service(st)
    raw_size = len(await request.body())
    chat = parse_chat_request(await read_json_body(request))
    admit(request, st, service.max_images(chat), raw_size)
    timeout_s = st.settings.request_timeout_seconds
    deadline = asyncio.get_running_loop().time() + timeout_s
    try:
        prepared = await prepare_within_deadline(request, st, service.prepare(chat, arrival), deadline)
    except ClientDisconnected:
        return Response(status_code=CLIENT_CLOSED)
    return await run_generation(
        request,
        st,
        service,
        prepared,
        stream=bool(chat.stream),
        deadline=deadline,
        complete=lambda: service.complete(prepared),
        events=lambda steps, first: service.stream(prepared, steps, first),
    )
