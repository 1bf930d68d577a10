"""The FastAPI app: lifespan (engine start in the background, clean shutdown), middleware, errors.

The engine starts after the app begins serving, so ``/health`` answers at once and ``/ready`` says 503
until the model is loaded. :func:`create_app` takes the model loader and the media loader factory as
arguments, which is how the unit tests put a fake engine behind the real HTTP layer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from server import __version__
from server.chat import ChatService
from server.completions import router as completions_router
from server.errors import APIError
from server.generation import InferenceEngine
from server.lifecycle import AppState
from server.logs import REQUEST_ERROR_KEY
from server.metrics import ServerMetrics, default_metrics
from server.middleware import RequestContextMiddleware
from server.playground import create_router as create_playground_router
from server.prompt import PromptBuilder, PromptLimits
from server.routes import release_admission, router
from server.settings import ServerSettings

if TYPE_CHECKING:
    from server.media import MediaLoaderProtocol

logger = logging.getLogger(__name__)

ModelLoader = Callable[[ServerSettings], tuple[InferenceEngine, PromptBuilder]]
"""Builds the engine and the prompt builder (runs in a worker thread; may block for a while)."""

MediaLoaderFactory = Callable[[ServerSettings, int], "MediaLoaderProtocol"]
"""Builds the media loader from the settings and the model's image input side (pixels, 384), inside
the event loop once the model is loaded: images and frames are resized to that side while decoding."""


def resolve_model_path(settings: ServerSettings) -> Path:
    """The checkpoint folder: ``settings.model``, or the built-in tiny random-weight checkpoint."""
    if settings.model:
        return Path(settings.model)
    from model_adapter.checkpoint import ensure_tiny_checkpoint

    path = Path(ensure_tiny_checkpoint())
    logger.warning(
        "No --model given: serving the built-in TINY checkpoint at %s. Its weights are RANDOM: "
        "outputs are meaningless text (for tests and demos only).",
        path,
    )
    return path


def load_vllm_model(settings: ServerSettings) -> tuple[InferenceEngine, PromptBuilder]:
    """The production loader: resolve the checkpoint, load its tokenizer, start vLLM."""
    from server.engine import VLLMEngine  # the only server module that imports vLLM

    path = resolve_model_path(settings)
    builder = PromptBuilder.from_pretrained(path, default_system_prompt=settings.default_system_prompt)
    engine = VLLMEngine.start(settings, path)
    return engine, builder


def default_media_loader(settings: ServerSettings, image_size: int) -> MediaLoaderProtocol:
    """A :class:`server.media.MediaLoader` configured from the settings, resizing images and frames
    to ``image_size`` x ``image_size`` (the model's input) while decoding, with a decoded-media
    cache of ``--media-cache-gib``."""
    from server.media import MediaLimits, MediaLoader
    from server.media.cache import MediaCache

    limits = MediaLimits(
        max_media_bytes=settings.max_media_bytes,
        max_image_pixels=settings.max_image_pixels,
        fetch_timeout_seconds=settings.fetch_timeout_seconds,
        allowed_media_dir=settings.allowed_media_dir,
        allowed_remote_hosts=tuple(settings.allowed_remote_hosts),
        max_frames=max(1, settings.max_frames_per_request),
    )
    return MediaLoader(
        limits,
        max_workers=settings.media_workers,
        resize_to=image_size,
        cache=MediaCache(int(settings.media_cache_gib * 2**30)),
    )


def prompt_limits(settings: ServerSettings) -> PromptLimits:
    return PromptLimits(
        max_images=settings.max_images_per_request,
        max_frames=settings.max_frames_per_request,
        max_views=settings.max_views_per_request,
        default_num_frames=settings.default_num_frames,
    )


def create_app(
    settings: ServerSettings,
    *,
    model_loader: ModelLoader = load_vllm_model,
    media_loader_factory: MediaLoaderFactory = default_media_loader,
    metrics: ServerMetrics | None = None,
    on_fatal: Callable[[BaseException], None] | None = None,
) -> FastAPI:
    """Build the app.

    Args:
        settings: the configuration.
        model_loader: starts the engine (default: vLLM with the adapter).
        media_loader_factory: builds the media loader once the model is loaded.
        metrics: metrics to use (default: the process-wide ones in prometheus' default registry,
            where vLLM registers its own).
        on_fatal: called if the engine cannot start or dies while serving (the CLI then exits
            non-zero).
    """
    state = AppState(settings=settings, metrics=metrics or default_metrics())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        load_task = asyncio.create_task(_load(state, model_loader, media_loader_factory, on_fatal))
        watchdog = asyncio.create_task(_watch_engine(state, load_task, on_fatal))
        try:
            yield
        finally:
            watchdog.cancel()
            if state.phase != "failed":
                state.phase = "stopped"
            if not load_task.done():
                # The loader runs in a thread that cannot be interrupted; wait for it so the engine
                # it starts is shut down rather than leaked.
                with contextlib.suppress(Exception):
                    await asyncio.shield(load_task)
            if state.engine is not None:
                logger.info("shutting down the engine")
                await asyncio.to_thread(state.engine.shutdown)
            if state.media_loader is not None:
                with contextlib.suppress(Exception):
                    await state.media_loader.aclose()

    app = FastAPI(
        title="LLaVA-NeXT-Interleave server",
        description="OpenAI-compatible chat completions with interleaved images, videos and 3D scenes.",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.interleave = state
    app.include_router(router)
    app.include_router(completions_router)  # /v1/completions, /tokenize, /detokenize
    if settings.playground:
        app.include_router(create_playground_router())
    app.add_middleware(
        RequestContextMiddleware,
        max_body_bytes=settings.max_request_bytes,
        metrics=state.metrics,
        body_timeout_seconds=settings.body_read_timeout_seconds,
        on_request_end=lambda scope: release_admission(state, scope),
    )

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        request.scope.setdefault("state", {})[REQUEST_ERROR_KEY] = (
            exc.code or exc.type
        )  # the request's log line
        return JSONResponse(exc.to_dict(), status_code=exc.status_code, headers=exc.headers)

    # No RequestValidationError handler: no route declares a body or typed parameters (bodies are
    # parsed by server.schemas into 400s naming the field), so FastAPI never raises one.

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        err = APIError(
            exc.status_code,
            str(exc.detail),
            type="not_found_error" if exc.status_code == 404 else "invalid_request_error",
        )
        return JSONResponse(err.to_dict(), status_code=exc.status_code, headers=getattr(exc, "headers", None))

    return app


ENGINE_WATCH_INTERVAL_SECONDS = 0.5
"""How often the engine's liveness is checked (a dead engine ends the process within about 1 s + drain)."""


async def _watch_engine(
    state: AppState, load_task: asyncio.Task, on_fatal: Callable[[BaseException], None] | None
) -> None:
    """Once the engine runs, check it every :data:`ENGINE_WATCH_INTERVAL_SECONDS`; when it has died
    (its process was killed, or it raised), fail /health and /ready, refuse new requests with 503
    ``engine_dead`` and call ``on_fatal`` so the process exits non-zero for its supervisor to restart.
    In-flight requests get the engine's error from vLLM meanwhile."""
    await asyncio.shield(load_task)
    engine = state.engine
    if engine is None:
        return
    while not engine.is_dead:
        await asyncio.sleep(ENGINE_WATCH_INTERVAL_SECONDS)
    reason = "the engine core process died or raised an error"
    logger.error("engine failure: %s; in-flight requests: %d; exiting", reason, state.in_flight)
    state.engine_failed(reason)
    if on_fatal is not None:
        on_fatal(RuntimeError(reason))


LOAD_PROGRESS_INTERVAL_SECONDS = 10.0
"""While the engine loads (30-100 s on 2 CPU cores), a progress line this often."""


async def _log_load_progress() -> None:
    """Log "still loading the engine (N s)" every :data:`LOAD_PROGRESS_INTERVAL_SECONDS` until cancelled."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while True:
        await asyncio.sleep(LOAD_PROGRESS_INTERVAL_SECONDS)
        logger.info("still loading the engine (%.0f s)", loop.time() - start)


async def _load(
    state: AppState,
    model_loader: ModelLoader,
    media_loader_factory: MediaLoaderFactory,
    on_fatal: Callable[[BaseException], None] | None,
) -> None:
    settings = state.settings
    progress = asyncio.create_task(_log_load_progress())
    try:
        engine, builder = await asyncio.to_thread(model_loader, settings)
    except Exception as exc:
        logger.exception("the engine failed to start")
        state.phase = "failed"
        state.load_error = f"{type(exc).__name__}: {exc}"
        if on_fatal is not None:
            on_fatal(exc)
        return
    finally:
        progress.cancel()
    state.engine = engine
    # Images and frames are resized to the model's input side while decoding (same pixels as the
    # model's own preprocessing; bounds the memory a request holds).
    media_loader = media_loader_factory(settings, builder.image_size)
    state.media_loader = media_loader
    cache = getattr(media_loader, "cache", None)
    if cache is not None:  # the decoded-media cache counts into /metrics
        cache.metrics = state.metrics
    state.service = ChatService(
        engine,
        media_loader,
        builder,
        prompt_limits(settings),
        state.metrics,
        default_max_tokens=settings.default_max_tokens,
    )
    if state.phase == "loading":
        state.phase = "ready"
        logger.info(
            "ready: model %s (max_model_len %d, %d tokens per image)",
            engine.served_model_name,
            engine.max_model_len,
            builder.tokens_per_image,
        )
    elif state.phase == "stopped":
        await asyncio.to_thread(engine.shutdown)
        state.engine = None
