"""The chat completion pipeline: validated request -> media -> prompt -> engine -> OpenAI objects.

All per-request state lives in :class:`PreparedChat` and local variables; the shared
:class:`ChatService` holds only immutable configuration and shared clients (engine, media loader,
prompt builder, metrics).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from PIL import Image

from server.errors import APIError, internal_error, invalid_request
from server.generation import (
    CompletionDelta,
    EngineFailure,
    EngineRequestError,
    EngineStep,
    InferenceEngine,
    SamplingOptions,
    TokenLogprobInfo,
)
from server.metrics import ServerMetrics
from server.prompt import BuiltPrompt, MediaRequest, PromptBuilder, PromptLimits, plan_media, resolve_max_tokens
from server.schemas import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Choice,
    ChoiceLogprobs,
    ChunkChoice,
    DeltaMessage,
    TokenLogprob,
    TopLogprob,
    Usage,
)
from server.streaming import DONE, sse_event

logger = logging.getLogger(__name__)

_MEDIA_METRIC_KIND = {"image": "image", "video": "video", "scene": "scene_view"}


@dataclass
class PreparedChat:
    """A request ready for the engine (one per HTTP request).

    Attributes:
        id: the completion id ``chatcmpl-...``, also the engine request id.
        request: the validated body.
        prompt: the built prompt (token ids and counts).
        images: one RGB image per image-token id, in prompt order.
        options: sampling options with ``max_tokens`` resolved.
        arrival: ``time.perf_counter()`` at arrival (for TTFT).
    """

    id: str
    request: ChatCompletionRequest
    prompt: BuiltPrompt
    images: list[Image.Image]
    options: SamplingOptions
    arrival: float
    created: int = field(default_factory=lambda: int(time.time()))


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
        media_loader: object,
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

    def max_images(self, request: ChatCompletionRequest) -> int:
        """Images, frames and views the request can contribute at most (each of 729 tokens), known
        before anything is fetched or decoded: what admission counts.

        Raises:
            APIError: 400 when a per-request media limit is exceeded.
        """
        return sum(m.max_items for m in plan_media(request, self.limits))

    # -- preparation ------------------------------------------------------------------------------

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
        min_text = self.prompt_builder.min_text_tokens(request)
        min_visual = sum(fewest_images) * self.prompt_builder.tokens_per_image
        if min_text + min_visual + (requested or 1) > max_len:
            raise invalid_request(
                f"This request needs at least {min_text + min_visual + (requested or 1)} tokens: "
                f"at least {min_text} text tokens + at least {min_visual} visual tokens + "
                f"{requested or 1} max_tokens, but the model's context holds {max_len} tokens.",
                param="max_tokens" if requested is not None and min_text + min_visual < max_len else "messages",
                code="context_length_exceeded",
            )
        # Then with the fewest images the parts can give (a video gives at least one frame), so
        # hopeless requests fail before any download or decode.
        encoded: dict[str, list[int]] = {}  # text runs tokenized once for both builds
        lower = await self._build_prompt(request, fewest_images, encoded)
        resolve_max_tokens(lower, requested, max_model_len=max_len, default_max_tokens=self.default_max_tokens)

        media = await self._load_all(plan)
        prompt = await self._build_prompt(request, [len(images) for images in media], encoded)
        max_tokens = resolve_max_tokens(
            prompt, requested, max_model_len=max_len, default_max_tokens=self.default_max_tokens
        )
        images = [img for group in media for img in group]
        if len(images) != prompt.num_images:  # an invariant of the builder, never user input
            raise internal_error("image placeholders do not match the images")
        temperature = 1.0 if request.temperature is None else request.temperature
        options = SamplingOptions(
            max_tokens=max_tokens,
            n=request.n,
            temperature=temperature,
            top_p=1.0 if request.top_p is None else request.top_p,
            seed=request.seed,
            stop=tuple(request.stop or ()),
            presence_penalty=request.presence_penalty or 0.0,
            frequency_penalty=request.frequency_penalty or 0.0,
            logprobs=(request.top_logprobs or 0) if request.logprobs else None,
        )
        return PreparedChat(
            id=f"chatcmpl-{uuid.uuid4().hex}",
            request=request,
            prompt=prompt,
            images=images,
            options=options,
            arrival=arrival,
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

    async def _load_all(self, plan: Sequence[MediaRequest]) -> list[list[Image.Image]]:
        """Fetch and decode every visual part concurrently; the first failing part (in prompt order)
        becomes a 400 naming it."""
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

    async def _load_one(self, media: MediaRequest) -> list[Image.Image]:
        # server.media.MediaError is a ValueError with a user-facing message; catching ValueError
        # keeps this module importable (and testable) without the media module.
        kind = _MEDIA_METRIC_KIND[media.kind]
        loader = self.media_loader
        try:
            if media.kind == "image":
                t0 = time.perf_counter()
                image = await loader.load_image(media.urls[0])  # type: ignore[attr-defined]
                self._count_media(kind, t0)
                return [image]
            if media.kind == "video":
                t0 = time.perf_counter()
                video = await loader.load_video(  # type: ignore[attr-defined]
                    media.urls[0], num_frames=media.num_frames, fps=media.fps
                )
                self._count_media(kind, t0)
                frames = list(video.frames)  # the sampler already caps fps sampling at num_frames
                if not frames:
                    raise ValueError("the video has no decodable frames")
                return [Image.fromarray(f).convert("RGB") for f in frames]
            images = []
            for k, url in enumerate(media.urls):
                t0 = time.perf_counter()
                try:
                    images.append(await loader.load_image(url))  # type: ignore[attr-defined]
                except ValueError as exc:
                    param = f"{media.param}.scene_views.urls[{k}]"
                    raise invalid_request(f"{param}: {exc}", param=param, code="invalid_media") from None
                self._count_media(kind, t0)
            return images
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
        try:
            async for step in self.engine.generate(
                prepared.id, prepared.prompt.prompt_token_ids, prepared.images, prepared.options
            ):
                now = time.perf_counter()
                if not prompt_counted:
                    self.metrics.prompt_tokens.inc(step.prompt_tokens)
                    prompt_counted = True
                for d in step.deltas:
                    if d.num_tokens <= 0:
                        continue
                    self.metrics.generation_tokens.inc(d.num_tokens)
                    if first:
                        self.metrics.ttft.observe(now - prepared.arrival)
                        first = False
                    prev = last_token_time.get(d.index)
                    if prev is not None:
                        per_token = (now - prev) / d.num_tokens
                        for _ in range(d.num_tokens):
                            self.metrics.itl.observe(per_token)
                    last_token_time[d.index] = now
                yield step
        except EngineRequestError as exc:
            raise invalid_request(str(exc), param="messages") from None
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
        """Run to the end and build the ``chat.completion`` object."""
        n = prepared.options.n
        texts = [""] * n
        tokens = [0] * n
        finish: list[str | None] = [None] * n
        logprobs: list[list[TokenLogprob]] | None = [[] for _ in range(n)] if prepared.options.logprobs is not None else None
        prompt_tokens = prepared.prompt.prompt_tokens
        async for step in self.generate(prepared):
            prompt_tokens = step.prompt_tokens
            for d in step.deltas:
                texts[d.index] += d.text
                tokens[d.index] += d.num_tokens
                if d.finish_reason is not None:
                    finish[d.index] = _finish_reason(d.finish_reason)
                if logprobs is not None and d.logprobs:
                    logprobs[d.index].extend(_token_logprobs(d.logprobs))
        choices = [
            Choice(
                index=i,
                message=AssistantMessage(content=texts[i]),
                logprobs=ChoiceLogprobs(content=logprobs[i]) if logprobs is not None else None,
                finish_reason=finish[i] or "stop",
            )
            for i in range(n)
        ]
        completion = sum(tokens)
        return ChatCompletion(
            id=prepared.id,
            created=prepared.created,
            model=self.model_name,
            choices=choices,
            usage=Usage(prompt_tokens=prompt_tokens, completion_tokens=completion, total_tokens=prompt_tokens + completion),
        )

    async def stream(self, prepared: PreparedChat, steps: AsyncIterator[EngineStep], first: EngineStep | None) -> AsyncIterator[bytes]:
        """SSE events of a streamed completion, per DESIGN.md.

        One chunk per choice with ``delta.role`` first; then one chunk per choice output with
        ``delta.content``, the choice's last one carrying ``finish_reason``; with ``include_usage`` one
        more chunk with ``choices: []`` and ``usage`` (every other chunk has ``usage: null``); then
        ``data: [DONE]``. An error after the first event is one ``data: {"error": ...}`` event, then
        ``data: [DONE]``.

        Args:
            prepared: the request.
            steps: the engine steps after ``first``.
            first: the first engine step, already received (so errors before it became HTTP errors).
        """
        include_usage = prepared.request.include_usage
        want_logprobs = prepared.options.logprobs is not None
        n = prepared.options.n
        prompt_tokens = prepared.prompt.prompt_tokens
        completion_tokens = 0

        def chunk(choices: list[ChunkChoice], usage: Usage | None = None) -> bytes:
            obj = ChatCompletionChunk(
                id=prepared.id, created=prepared.created, model=self.model_name, choices=choices, usage=usage
            ).model_dump(mode="json", exclude_none=True)
            if include_usage and "usage" not in obj:
                obj["usage"] = None
            for c in obj["choices"]:
                c.setdefault("logprobs", None)
                c.setdefault("finish_reason", None)
            return sse_event(obj)

        def delta_chunk(d: CompletionDelta) -> bytes:
            return chunk(
                [
                    ChunkChoice(
                        index=d.index,
                        delta=DeltaMessage(content=d.text),
                        logprobs=ChoiceLogprobs(content=_token_logprobs(d.logprobs or ()))
                        if want_logprobs
                        else None,
                        finish_reason=_finish_reason(d.finish_reason) if d.finish_reason else None,
                    )
                ]
            )

        try:
            for i in range(n):
                yield chunk([ChunkChoice(index=i, delta=DeltaMessage(role="assistant", content=""))])

            async def all_steps() -> AsyncIterator[EngineStep]:
                if first is not None:
                    yield first
                async for s in steps:
                    yield s

            async for step in all_steps():
                prompt_tokens = step.prompt_tokens
                for d in step.deltas:
                    completion_tokens += d.num_tokens
                    if not d.text and d.finish_reason is None and not d.logprobs:
                        continue
                    yield delta_chunk(d)
            if include_usage:
                yield chunk(
                    [],
                    Usage(
                        prompt_tokens=prompt_tokens,
                        completion_tokens=completion_tokens,
                        total_tokens=prompt_tokens + completion_tokens,
                    ),
                )
        except APIError as exc:
            logger.warning("stream %s failed after it started: %s", prepared.id, exc.message)
            yield sse_event(exc.to_dict())
        except Exception:
            logger.exception("stream %s failed", prepared.id)
            yield sse_event(internal_error().to_dict())
        yield DONE


def _finish_reason(reason: str) -> str:
    return "length" if reason == "length" else "stop"


def _token_logprobs(items: Sequence[TokenLogprobInfo]) -> list[TokenLogprob]:
    return [
        TokenLogprob(
            token=t.token,
            logprob=_clamp(t.logprob),
            bytes=list(t.token.encode("utf-8")),
            top_logprobs=[TopLogprob(token=s, logprob=_clamp(lp), bytes=list(s.encode("utf-8"))) for s, lp in t.top],
        )
        for t in items
    ]


def _clamp(lp: float) -> float:
    """OpenAI clients cannot parse -inf: clamp as vLLM's server does."""
    return max(lp, -9999.0) if not math.isnan(lp) else -9999.0
