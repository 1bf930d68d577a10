"""The chat completion pipeline: validated request -> media -> prompt -> engine -> OpenAI objects.

All per-request state lives in :class:`PreparedChat` and local variables; the shared
:class:`ChatService` holds only immutable configuration and shared clients (engine, media loader,
prompt builder, metrics).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from PIL import Image

from server.budget import check_lower_bound, resolve_max_tokens
from server.chat_output import ChunkWriter, build_completion, stream_events
from server.errors import APIError, internal_error, invalid_request
from server.generation import (
    EngineFailure,
    EngineRequestError,
    EngineStep,
    InferenceEngine,
    SamplingOptions,
)
from server.logs import request_stats
from server.metrics import ServerMetrics
from server.prompt import BuiltPrompt, MediaRequest, PromptBuilder, PromptLimits, plan_media
from server.sampling import sampling_options
from server.schemas import ChatCompletion, ChatCompletionRequest
from server.streaming import DONE, sse_event

if TYPE_CHECKING:
    from server.media import MediaLoaderProtocol

logger = logging.getLogger(__name__)

_MEDIA_METRIC_KIND = {"image": "image", "video": "video", "scene": "scene_view"}


@dataclass
class PreparedChat:
    """A request ready for the engine (one per HTTP request).

    Attributes:
        id: the engine request id ``chatcmpl-<uuid>`` (unique per request).
        response_id: the ``id`` of the response: ``chatcmpl-{request_id}`` when the request gives
            vLLM's ``request_id``, else ``id``.
        request: the validated body.
        prompt: the built prompt (token ids and counts).
        images: one RGB image per image-token id, in prompt order.
        options: sampling options with ``max_tokens`` resolved.
        media_uuids: one content key per image (None where the loader gave none), handed to the
            engine as vLLM's ``multi_modal_uuids`` so its processor, encoder and prefix caches
            recognise repeated media without hashing pixels (see ``server.media.cache``).
        arrival: ``time.perf_counter()`` at arrival (for TTFT).
    """

    id: str
    response_id: str
    request: ChatCompletionRequest
    prompt: BuiltPrompt
    images: list[Image.Image]
    options: SamplingOptions
    arrival: float
    created: int = field(default_factory=lambda: int(time.time()))
    media_uuids: list[str | None] | None = None


class ChatService:
    """Runs chat completions on one engine.

    Args:
        engine: the inference engine.
        media_loader: a :class:`server.media.MediaLoader` (``load_image`` / ``load_video``).
        prompt_builder: renders conversations as token ids.
        limits: per-request media limits.
        metrics: where to count.
        default_max_tokens: cap for requests without ``max_tokens``.
    """

    def __init__(
        self,
        engine: InferenceEngine,
        media_loader: MediaLoaderProtocol,
        prompt_builder: PromptBuilder,
        limits: PromptLimits,
        metrics: ServerMetrics,
        *,
        default_max_tokens: int,
    ) -> None:
        self.engine = engine
        self.media_loader = media_loader
        self.prompt_builder = prompt_builder
        # Tokenizing runs off the event loop (a large text must not stall other requests and
        # /health), on one thread: fast tokenizers are not safe for concurrent calls that change
        # settings such as split_special_tokens.
        self._tokenizer_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tokenize")
        self.limits = limits
        self.metrics = metrics
        self.default_max_tokens = default_max_tokens

    @property
    def model_name(self) -> str:
        return self.engine.served_model_name

    # -- preparation ------------------------------------------------------------------------------

    def max_images(self, request: ChatCompletionRequest) -> int:
        """Images, frames and views the request can contribute at most (each of 729 tokens), known
        before anything is fetched or decoded: what admission counts.

        Raises:
            APIError: 400 when a per-request media limit is exceeded.
        """
        return sum(m.max_items for m in plan_media(request, self.limits))

    async def prepare(self, request: ChatCompletionRequest, arrival: float) -> PreparedChat:
        """Check, fetch and decode media, build the prompt and check the token budget.

        Raises:
            APIError: 400 for bad input (limits, media, budget), 404 for an unknown model.
        """
        if request.model is not None and request.model != self.model_name:
            raise APIError(
                404,
                f"The model '{request.model}' does not exist; this server serves '{self.model_name}'.",
                param="model",
                code="model_not_found",
            )
        plan = plan_media(request, self.limits)
        max_len = self.engine.max_model_len
        requested = request.requested_max_tokens
        fewest_images = [1 if m.kind == "video" else m.max_items for m in plan]
        # Cheapest check first, without tokenizing: a lower bound of the text tokens.
        check_lower_bound(
            min_text_tokens=self.prompt_builder.min_text_tokens(request),
            min_visual_tokens=sum(fewest_images) * self.prompt_builder.tokens_per_image,
            requested=requested,
            max_model_len=max_len,
        )
        # Then with the fewest images the parts can give (a video gives at least one frame), so
        # hopeless requests fail before any download or decode.
        encoded: dict[str, list[int]] = {}  # text runs tokenized once for both builds
        lower = await self._build_prompt(request, fewest_images, encoded)
        resolve_max_tokens(
            lower, requested, max_model_len=max_len, default_max_tokens=self.default_max_tokens
        )

        loaded = await self._load_all(plan)
        media = [images for images, _ in loaded]
        prompt = await self._build_prompt(request, [len(images) for images in media], encoded)
        max_tokens = resolve_max_tokens(
            prompt, requested, max_model_len=max_len, default_max_tokens=self.default_max_tokens
        )
        images = [img for group in media for img in group]
        uuids = [key for _, keys in loaded for key in keys]
        stats = request_stats()  # the request's log line
        stats.prompt_tokens, stats.visual_tokens = prompt.prompt_tokens, prompt.visual_tokens
        for part, items in zip(plan, media, strict=True):
            if part.kind == "image":
                stats.images += 1
            elif part.kind == "video":
                stats.videos += 1
                stats.frames += len(items)
            else:
                stats.scene_views += len(items)
        if len(images) != prompt.num_images:  # an invariant of the builder, never user input
            raise internal_error("image placeholders do not match the images")
        options = sampling_options(
            request, max_tokens=max_tokens, logprobs=(request.top_logprobs or 0) if request.logprobs else None
        )
        if request.min_tokens > max_tokens:
            raise invalid_request(
                f"min_tokens ({request.min_tokens}) must not exceed max_tokens ({max_tokens})",
                param="min_tokens",
            )
        engine_id = f"chatcmpl-{uuid.uuid4().hex}"
        return PreparedChat(
            id=engine_id,
            response_id=f"chatcmpl-{request.request_id}" if request.request_id else engine_id,
            request=request,
            prompt=prompt,
            images=images,
            options=options,
            arrival=arrival,
            media_uuids=uuids if any(k is not None for k in uuids) else None,
        )

    async def _build_prompt(
        self,
        request: ChatCompletionRequest,
        items_per_media: Sequence[int],
        encoded: dict[str, list[int]],
    ) -> BuiltPrompt:
        """``PromptBuilder.build`` on the tokenizer thread (``encoded``: the request's memo)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._tokenizer_pool, self.prompt_builder.build, request, items_per_media, encoded
        )

    async def _load_all(
        self, plan: Sequence[MediaRequest]
    ) -> list[tuple[list[Image.Image], list[str | None]]]:
        """Fetch and decode every visual part concurrently (images and videos at once, on the
        loader's worker threads); the first failing part (in prompt order) becomes a 400 naming it.
        Per part: its images and one content key per image (None when the loader has none)."""
        if not plan:
            return []
        tasks = [asyncio.ensure_future(self._load_one(m)) for m in plan]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        except asyncio.CancelledError:
            for t in tasks:
                t.cancel()
            raise
        failed = [t for t in tasks if t.done() and not t.cancelled() and t.exception() is not None]
        if failed:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise failed[0].exception()  # type: ignore[misc]
        return [t.result() for t in tasks]

    async def _image(self, url: str) -> tuple[Image.Image, str | None]:
        """One image and its content key: the loader's ``load_image_with_key`` when it has one
        (``server.media.MediaLoader``), else ``load_image`` and no key."""
        loader = self.media_loader
        keyed = getattr(loader, "load_image_with_key", None)
        if keyed is not None:
            return await keyed(url)
        return await loader.load_image(url), None

    async def _load_one(self, media: MediaRequest) -> tuple[list[Image.Image], list[str | None]]:
        # server.media.MediaError is a ValueError with a user-facing message; catching ValueError
        # keeps this module importable (and testable) without the media module.
        kind = _MEDIA_METRIC_KIND[media.kind]
        loader = self.media_loader
        try:
            if media.kind == "image":
                t0 = time.perf_counter()
                image, key = await self._image(media.urls[0])
                self._count_media(kind, t0)
                return [image], [key]
            if media.kind == "video":
                t0 = time.perf_counter()
                video = await loader.load_video(media.urls[0], num_frames=media.num_frames, fps=media.fps)
                self._count_media(kind, t0)
                frames = list(video.frames)  # the sampler already caps fps sampling at num_frames
                if not frames:
                    raise ValueError("the video has no decodable frames")
                keys = list(getattr(video, "frame_keys", None) or [None] * len(frames))
                if len(keys) != len(frames):  # an invariant of the loader, never user input
                    raise internal_error("video frame keys do not match the frames")
                # New images over the (possibly cached, shared and read-only) frame arrays.
                return [Image.fromarray(f).convert("RGB") for f in frames], keys
            images, keys = [], []
            for k, url in enumerate(media.urls):
                t0 = time.perf_counter()
                try:
                    image, key = await self._image(url)
                except ValueError as exc:
                    param = f"{media.param}.scene_views.urls[{k}]"
                    raise invalid_request(f"{param}: {exc}", param=param, code="invalid_media") from None
                images.append(image)
                keys.append(key)
                self._count_media(kind, t0)
            return images, keys
        except ValueError as exc:
            raise invalid_request(f"{media.param}: {exc}", param=media.param, code="invalid_media") from None

    def _count_media(self, kind: str, t0: float) -> None:
        self.metrics.media_items.labels(kind=kind).inc()
        self.metrics.media_decode_seconds.labels(kind=kind).observe(time.perf_counter() - t0)

    # -- generation -------------------------------------------------------------------------------

    def generate(self, prepared: PreparedChat) -> AsyncIterator[EngineStep]:
        """The engine's steps for a prepared request, with engine errors turned into APIErrors and
        token metrics counted."""
        return self._generate(prepared)

    async def _generate(self, prepared: PreparedChat) -> AsyncIterator[EngineStep]:
        first = True
        last_token_time: dict[int, float] = {}
        prompt_counted = False
        stats = request_stats()
        try:
            async for step in self.engine.generate(
                prepared.id,
                prepared.prompt.prompt_token_ids,
                prepared.images,
                prepared.options,
                media_uuids=prepared.media_uuids,
            ):
                now = time.perf_counter()
                if not prompt_counted:
                    self.metrics.prompt_tokens.inc(step.prompt_tokens)
                    stats.prompt_tokens = step.prompt_tokens or stats.prompt_tokens
                    prompt_counted = True
                for d in step.deltas:
                    if d.num_tokens <= 0:
                        continue
                    self.metrics.generation_tokens.inc(d.num_tokens)
                    stats.completion_tokens += d.num_tokens
                    if first:
                        self.metrics.ttft.observe(now - prepared.arrival)
                        stats.first_token_seconds = now - prepared.arrival
                        first = False
                    prev = last_token_time.get(d.index)
                    if prev is not None:
                        per_token = (now - prev) / d.num_tokens
                        for _ in range(d.num_tokens):
                            self.metrics.itl.observe(per_token)
                    last_token_time[d.index] = now
                yield step
        except EngineRequestError as exc:
            raise invalid_request(str(exc), param=exc.param or "messages") from None
        except EngineFailure as exc:
            logger.error("engine failure on %s: %s", prepared.id, exc)
            raise internal_error(f"The engine failed to process the request: {exc}") from None

    async def abort(self, prepared: PreparedChat) -> None:
        """Abort the engine request of ``prepared`` (no-op if it finished)."""
        logger.info("client disconnected: aborting %s", prepared.id)
        try:
            await self.engine.abort(prepared.id)
        except Exception:
            logger.exception("abort of %s failed", prepared.id)

    # -- responses --------------------------------------------------------------------------------

    async def complete(self, prepared: PreparedChat) -> ChatCompletion:
        """Run to the end and build the ``chat.completion`` object (:mod:`server.chat_output`)."""
        return await build_completion(
            request=prepared.request,
            steps=self.generate(prepared),
            response_id=prepared.response_id,
            created=prepared.created,
            model=self.model_name,
            n=prepared.options.n,
            want_logprobs=prepared.options.logprobs is not None,
            prompt_tokens=prepared.prompt.prompt_tokens,
            tokenizer=self.prompt_builder.tokenizer,
            visual_tokens=prepared.prompt.visual_tokens,
        )

    async def stream(
        self, prepared: PreparedChat, steps: AsyncIterator[EngineStep], first: EngineStep | None
    ) -> AsyncIterator[bytes]:
        """SSE events of a streamed completion (chunks per :func:`server.chat_output.stream_events`).

        An error after the first event is one ``data: {"error": ...}`` event, then ``data: [DONE]``.

        Args:
            prepared: the request.
            steps: the engine steps after ``first``.
            first: the first engine step, already received (so errors before it became HTTP errors).
        """

        async def all_steps() -> AsyncIterator[EngineStep]:
            if first is not None:
                yield first
            async for s in steps:
                yield s

        writer = ChunkWriter(
            response_id=prepared.response_id,
            created=prepared.created,
            model=self.model_name,
            include_usage=prepared.request.include_usage,
        )
        try:
            async for event in stream_events(
                request=prepared.request,
                steps=all_steps(),
                writer=writer,
                n=prepared.options.n,
                want_logprobs=prepared.options.logprobs is not None,
                prompt_tokens=prepared.prompt.prompt_tokens,
                tokenizer=self.prompt_builder.tokenizer,
                visual_tokens=prepared.prompt.visual_tokens,
            ):
                yield event
        except APIError as exc:
            logger.warning("stream %s failed after it started: %s", prepared.id, exc.message)
            yield sse_event(exc.to_dict())
        except Exception:
            logger.exception("stream %s failed", prepared.id)
            yield sse_event(internal_error().to_dict())
        yield DONE
