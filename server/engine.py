"""vLLM ``AsyncLLM`` behind the :class:`~server.generation.InferenceEngine` interface.

The ONLY server module that imports vLLM. One engine per process serves every request through vLLM's
continuous batching; requests go in as ``TokensPrompt`` with one ``<image>`` id per image (frames and
scene views are images too) and come out as DELTA outputs.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from PIL import Image

import model_adapter
from server.generation import (
    CompletionDelta,
    EngineFailure,
    EngineRequestError,
    EngineStep,
    SamplingOptions,
    TokenLogprobInfo,
)
from server.settings import ServerSettings

logger = logging.getLogger(__name__)

TINY_SERVED_NAME = "llava-interleave-tiny-random"
CPU_DEFAULT_KV_CACHE_GIB = 2.0
"""KV cache on the CPU build when neither --kv-cache-memory-gib nor VLLM_CPU_KVCACHE_SPACE is given
(otherwise vLLM reserves gpu_memory_utilization of ALL host memory and refuses to start on a busy host)."""


def _kv_cache_bytes(settings: ServerSettings) -> int | None:
    if settings.kv_cache_memory_gib is not None:
        return int(settings.kv_cache_memory_gib * 2**30)
    if os.environ.get("VLLM_CPU_KVCACHE_SPACE"):
        return None  # vLLM's CPU platform reads it
    from vllm.platforms import current_platform

    if current_platform.is_cpu():
        logger.warning(
            "CPU build without --kv-cache-memory-gib or VLLM_CPU_KVCACHE_SPACE: using a %.0f GiB KV cache",
            CPU_DEFAULT_KV_CACHE_GIB,
        )
        return int(CPU_DEFAULT_KV_CACHE_GIB * 2**30)
    return None


def served_model_name(settings: ServerSettings, model_path: Path) -> str:
    """``--served-model-name``, else the checkpoint folder's name (the built-in tiny model:
    ``llava-interleave-tiny-random``)."""
    if settings.served_model_name:
        return settings.served_model_name
    if not settings.model:
        return TINY_SERVED_NAME
    return Path(settings.model).name or str(settings.model)


def checkpoint_dtype(model_path: Path) -> str | None:
    """The ``torch_dtype`` (transformers 5: ``dtype``) a checkpoint's ``config.json`` names, e.g.
    ``"float32"``; None when it names none or cannot be read."""
    try:
        config = json.loads((model_path / "config.json").read_text())
    except (OSError, ValueError):
        return None
    for section in (config, config.get("text_config") or {}):
        value = section.get("torch_dtype") or section.get("dtype")
        if isinstance(value, str):
            return value.removeprefix("torch.")
    return None


def resolve_dtype(settings_dtype: str, model_path: Path) -> str:
    """``--dtype`` as given to vLLM. ``auto`` on the CPU build becomes the checkpoint's own dtype
    when the CPU supports it.

    vLLM's ``auto`` casts float32 checkpoints down to the platform's first 16-bit dtype (bfloat16 on
    CPU) and then logs one "Attempted to load weight ... float32 into parameter ... bfloat16" warning
    per weight while loading (38 for the tiny model, hundreds for a real one). On CPU there is no
    memory reason for that cast, so ``auto`` keeps the checkpoint's dtype there (no cast, no
    warnings); on GPUs ``auto`` stays vLLM's choice.
    """
    if settings_dtype != "auto":
        return settings_dtype
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return settings_dtype
    import torch

    name = checkpoint_dtype(model_path)
    dtype = getattr(torch, name, None) if name else None
    if isinstance(dtype, torch.dtype) and dtype in current_platform.supported_dtypes:
        logger.info("--dtype auto on CPU: serving in the checkpoint's dtype, %s", name)
        return str(name)
    return settings_dtype


def build_engine_args(settings: ServerSettings, model_path: Path) -> Any:
    """``AsyncEngineArgs`` from the settings (the adapter's ``hf_overrides`` included)."""
    from vllm.engine.arg_utils import AsyncEngineArgs

    kwargs: dict[str, Any] = dict(
        model=str(model_path),
        served_model_name=[served_model_name(settings, model_path)],
        dtype=resolve_dtype(settings.dtype, model_path),
        max_model_len=settings.max_model_len,
        tensor_parallel_size=settings.tensor_parallel_size,
        pipeline_parallel_size=settings.pipeline_parallel_size,
        data_parallel_size=settings.data_parallel_size,
        distributed_executor_backend=settings.distributed_executor_backend,
        scheduling_policy=settings.scheduling_policy,
        gpu_memory_utilization=settings.gpu_memory_utilization,
        # Our prompts send a video as its frames (image items), never as a video item. The engine
        # sizes its encoder cache and per-step encoder budget from its largest multimodal item,
        # though: with images only that is the scheduler's token budget (2048 tokens = 2 images on
        # CPU), so a request's images would be encoded two per step and evicted between requests.
        # Allowing one video item of up to max_frames_per_request frames sizes the budget for a
        # whole video's frames, as vLLM's own server has it (docs/performance.md).
        limit_mm_per_prompt={
            "image": settings.limit_images_per_prompt,
            "video": {"count": 1, "num_frames": settings.max_frames_per_request},
        },
        enable_prefix_caching=settings.enable_prefix_caching,
        mm_processor_cache_gb=settings.mm_processor_cache_gb,
        seed=settings.seed,
        hf_overrides=model_adapter.hf_overrides(),
        disable_log_stats=settings.disable_log_stats,
        enforce_eager=settings.enforce_eager,
        enable_log_requests=False,
    )
    if settings.max_num_seqs is not None:
        kwargs["max_num_seqs"] = settings.max_num_seqs
    if settings.max_num_batched_tokens is not None:
        kwargs["max_num_batched_tokens"] = settings.max_num_batched_tokens
    kv_bytes = _kv_cache_bytes(settings)
    if kv_bytes is not None:
        kwargs["kv_cache_memory_bytes"] = kv_bytes
    return AsyncEngineArgs(**kwargs)


WORKER_SHUTDOWN_TIMEOUT_SECONDS = 15
"""Grace the engine core gives its worker processes to stop (``VLLM_WORKER_SHUTDOWN_TIMEOUT_SECONDS``,
vLLM's default 5 s) before it signals them: a worker tearing down torch.distributed on a busy host took
longer, was killed, and the engine core's exit then logged an EngineDeadError traceback."""

ENGINE_SHUTDOWN_TIMEOUT_SECONDS = 30.0
"""Grace the engine core gets to stop (vLLM's default is 5 s, no more than its own grace for its
workers: on a busy host it was killed mid-teardown, leaking a shared-memory segment)."""

_ASYNC_LLM_CLASS: Any = None


def _async_llm_class() -> Any:
    """vLLM's ``AsyncLLM`` with a ``__del__`` that does nothing once :meth:`VLLMEngine.shutdown`
    has shut it down (created once, on first use: this module imports vLLM lazily)."""
    global _ASYNC_LLM_CLASS
    if _ASYNC_LLM_CLASS is None:
        from vllm.v1.engine.async_llm import AsyncLLM

        class InterleaveAsyncLLM(AsyncLLM):
            _interleave_shut_down = False

            def __del__(self) -> None:
                if not self._interleave_shut_down:
                    super().__del__()

        _ASYNC_LLM_CLASS = InterleaveAsyncLLM
    return _ASYNC_LLM_CLASS


class VLLMEngine:
    """An ``AsyncLLM`` running the LLaVA-Interleave adapter.

    Attributes:
        model_path: the checkpoint folder.
        served_model_name: the name in responses.
        max_model_len: the engine's context length in tokens.
    """

    def __init__(self, llm: Any, model_path: Path, served_model_name: str, max_model_len: int) -> None:
        self.llm = llm
        self.model_path = model_path
        self.served_model_name = served_model_name
        self.max_model_len = max_model_len
        self._tokenizer: Any = None  # vLLM's tokenizer, fetched on first use

    @classmethod
    def start(cls, settings: ServerSettings, model_path: Path) -> VLLMEngine:
        """Create the engine (blocks while vLLM starts its engine core: ~20 s for the tiny model on CPU).

        Raises:
            Exception: whatever vLLM raises when it cannot start.
        """
        from vllm.usage.usage_lib import UsageContext

        model_adapter.register()
        # Read by the engine core process, which inherits the environment.
        os.environ.setdefault("VLLM_WORKER_SHUTDOWN_TIMEOUT_SECONDS", str(WORKER_SHUTDOWN_TIMEOUT_SECONDS))
        args = build_engine_args(settings, model_path)
        # The defaults vLLM's own OpenAI server gets (on GPUs a larger scheduler token budget).
        vllm_config = args.create_engine_config(UsageContext.OPENAI_API_SERVER)
        sched = vllm_config.scheduler_config
        # vLLM sizes the encoder cache as max(scheduler token budget, largest item): room for about
        # one request's images. Identical images and frames across concurrent requests (a shared
        # video, a product photo) are then evicted and re-encoded; a larger cache keeps them.
        sched.encoder_cache_size = max(sched.encoder_cache_size, settings.encoder_cache_tokens)
        logger.info("starting vLLM AsyncLLM for %s", model_path)
        llm = _async_llm_class().from_vllm_config(
            vllm_config,
            usage_context=UsageContext.OPENAI_API_SERVER,
            enable_log_requests=False,
            disable_log_stats=settings.disable_log_stats,
        )
        return cls(
            llm, model_path, served_model_name(settings, model_path), int(llm.model_config.max_model_len)
        )

    @property
    def is_dead(self) -> bool:
        """True once the engine core died or raised (vLLM's ``AsyncLLM.errored``), or after shutdown."""
        return self.llm is None or bool(self.llm.errored)

    def _sampling_params(self, options: SamplingOptions) -> Any:
        """vLLM ``SamplingParams`` of ``options`` (DELTA outputs; structured outputs through vLLM's
        own backends, ``StructuredOutputsParams``)."""
        from vllm.sampling_params import RequestOutputKind, SamplingParams, StructuredOutputsParams

        structured = None
        so = options.structured
        if so is not None:
            value: Any = list(so.value) if so.kind == "choice" else so.value
            structured = StructuredOutputsParams(**{so.kind: value})
        return SamplingParams(
            n=options.n,
            max_tokens=options.max_tokens,
            temperature=options.temperature,
            top_p=options.top_p,
            top_k=options.top_k,
            min_p=options.min_p,
            repetition_penalty=options.repetition_penalty,
            seed=options.seed,
            stop=list(options.stop) or None,
            stop_token_ids=list(options.stop_token_ids) or None,
            include_stop_str_in_output=options.include_stop_str_in_output,
            ignore_eos=options.ignore_eos,
            min_tokens=options.min_tokens,
            presence_penalty=options.presence_penalty,
            frequency_penalty=options.frequency_penalty,
            logprobs=options.logprobs,
            prompt_logprobs=options.prompt_logprobs,
            logit_bias={tid: bias for tid, bias in options.logit_bias} or None,
            allowed_token_ids=list(options.allowed_token_ids)
            if options.allowed_token_ids is not None
            else None,
            bad_words=list(options.bad_words) or None,
            structured_outputs=structured,
            output_kind=RequestOutputKind.DELTA,
            skip_special_tokens=options.skip_special_tokens,
            spaces_between_special_tokens=options.spaces_between_special_tokens,
        )

    @property
    def priority_scheduling(self) -> bool:
        """True when the engine schedules by request ``priority`` (``--scheduling-policy priority``)."""
        return getattr(self.llm.vllm_config.scheduler_config, "policy", "fcfs") == "priority"

    async def generate(
        self,
        request_id: str,
        prompt_token_ids: Sequence[int],
        images: Sequence[Image.Image],
        options: SamplingOptions,
        *,
        media_uuids: Sequence[str | None] | None = None,
    ) -> AsyncIterator[EngineStep]:
        """See :meth:`server.generation.InferenceEngine.generate`."""
        from vllm.exceptions import VLLMClientError, VLLMValidationError
        from vllm.inputs import TokensPrompt
        from vllm.v1.engine.exceptions import EngineDeadError, EngineGenerateError

        prompt: dict[str, Any] = {"prompt_token_ids": list(prompt_token_ids)}
        if images:
            prompt["multi_modal_data"] = {"image": list(images)}
            if media_uuids is not None:
                # Content keys (server.media.cache): vLLM uses them as the items' hashes in its
                # processor, encoder and prefix caches instead of hashing the pixels.
                prompt["multi_modal_uuids"] = {"image": list(media_uuids)}
        if options.cache_salt is not None:
            prompt["cache_salt"] = options.cache_salt
        if options.priority and not self.priority_scheduling:
            raise EngineRequestError(
                f"priority {options.priority} needs priority scheduling: start the server with "
                "--scheduling-policy priority (this one schedules first come, first served)",
                param="priority",
            )
        want_logprobs = options.logprobs is not None
        first = True
        try:
            params = self._sampling_params(options)
            engine_prompt = TokensPrompt(**prompt)  # type: ignore[typeddict-item]  # keys built above
            async for out in self.llm.generate(engine_prompt, params, request_id, priority=options.priority):
                prompt_tokens = len(out.prompt_token_ids or ())
                deltas = [
                    CompletionDelta(
                        index=c.index,
                        text=c.text,
                        num_tokens=len(c.token_ids),
                        logprobs=self._logprobs(c, options.logprobs or 0) if want_logprobs else None,
                        finish_reason=c.finish_reason,
                        token_ids=tuple(c.token_ids),
                    )
                    for c in out.outputs
                ]
                cached = getattr(out, "num_cached_tokens", None)
                step = EngineStep(
                    prompt_tokens=prompt_tokens,
                    deltas=deltas,
                    finished=out.finished,
                    cached_tokens=int(cached) if cached is not None else None,
                )
                if first and options.prompt_logprobs is not None:
                    step = dataclasses.replace(
                        step,
                        prompt_token_ids=list(out.prompt_token_ids or ()),
                        prompt_logprobs=self._prompt_logprobs(out, options.prompt_logprobs),
                    )
                first = False
                yield step
        except (VLLMValidationError, VLLMClientError, ValueError) as exc:
            param = getattr(exc, "parameter", None)
            if options.structured is not None and (
                param in (None, "structured_outputs") or "grammar" in str(exc).lower()
            ):
                param = options.structured.param
            raise EngineRequestError(str(exc), param=param) from exc
        except (EngineDeadError, EngineGenerateError) as exc:
            cause = exc.__cause__ or exc
            raise EngineFailure(f"{type(cause).__name__}: {cause}") from exc

    def _prompt_logprobs(self, out: Any, top_k: int) -> list[tuple[tuple[int, float, int, str], ...] | None]:
        """Per prompt position: None for the first token and for image-token positions (their logprob
        is of the placeholder id, not of anything the user wrote), else the prompt token's
        ``(id, logprob, rank, text)`` and its ``top_k`` best alternatives."""
        ids = list(out.prompt_token_ids or ())
        image_id = getattr(self.llm.model_config.hf_config, "image_token_index", None)
        result: list[tuple[tuple[int, float, int, str], ...] | None] = []
        for pos, entries in enumerate(out.prompt_logprobs or [None] * len(ids)):
            tid = ids[pos] if pos < len(ids) else None
            if entries is None or tid is None or tid == image_id:
                result.append(None)
                continue
            chosen = entries.get(tid)
            row = []
            if chosen is not None:
                row.append(
                    (
                        tid,
                        _finite(chosen.logprob),
                        int(chosen.rank or 0),
                        chosen.decoded_token or self._decode(tid),
                    )
                )
            ranked = sorted(
                (
                    (t, lp)
                    for t, lp in entries.items()
                    if lp.rank is not None and lp.rank <= top_k and t != tid
                ),
                key=lambda item: item[1].rank,
            )
            row += [
                (t, _finite(lp.logprob), int(lp.rank), lp.decoded_token or self._decode(t))
                for t, lp in ranked[:top_k]
            ]
            result.append(tuple(row))
        return result

    def _decode(self, token_id: int) -> str:
        if self._tokenizer is None:
            self._tokenizer = self.llm.get_tokenizer()
        return self._tokenizer.decode([token_id])

    def _logprobs(self, completion: Any, top_k: int) -> tuple[TokenLogprobInfo, ...]:
        """OpenAI-style logprobs of the new tokens: the sampled token and its ``top_k`` best
        alternatives (vLLM returns the sampled token plus the top-k by rank)."""
        result = []
        for pos, token_id in enumerate(completion.token_ids):
            entries = (
                completion.logprobs[pos]
                if completion.logprobs is not None and pos < len(completion.logprobs)
                else None
            )
            if not entries:
                result.append(TokenLogprobInfo(token=self._decode(token_id), logprob=math.nan))
                continue
            chosen = entries.get(token_id)
            chosen_token = (
                chosen.decoded_token if chosen and chosen.decoded_token is not None else None
            ) or self._decode(token_id)
            ranked = sorted(
                ((tid, lp) for tid, lp in entries.items() if lp.rank is not None and lp.rank <= top_k),
                key=lambda item: item[1].rank,
            )
            top = tuple(
                (lp.decoded_token if lp.decoded_token is not None else self._decode(tid), float(lp.logprob))
                for tid, lp in ranked[:top_k]
            )
            result.append(
                TokenLogprobInfo(
                    token=chosen_token, logprob=float(chosen.logprob) if chosen else math.nan, top=top
                )
            )
        return tuple(result)

    async def abort(self, request_id: str) -> None:
        """Abort a request by its external id (all its ``n`` children)."""
        await self.llm.abort(request_id)

    def shutdown(self) -> None:
        """Stop the engine core process and free its resources (idempotent).

        vLLM's ``AsyncLLM.__del__`` runs ``shutdown`` again when the object is collected, which at
        interpreter exit (module globals gone) prints a traceback after a clean drain; the engine is
        an :func:`_async_llm_class` instance whose ``__del__`` skips that once shut down.
        """
        llm, self.llm = self.llm, None
        if llm is None:
            return
        # Stop reading engine outputs first: vLLM's shutdown stops the engine core and only then
        # cancels its output handler, which meanwhile sees the engine core go away and logs an
        # EngineDeadError traceback. Nothing is in flight any more when the server shuts down.
        handler = getattr(llm, "output_handler", None)
        if handler is not None and not handler.done():
            handler.get_loop().call_soon_threadsafe(handler.cancel)
        try:
            llm.shutdown(timeout=ENGINE_SHUTDOWN_TIMEOUT_SECONDS)
        except Exception:
            logger.exception("engine shutdown failed")
        llm._interleave_shut_down = True


def _finite(lp: float) -> float:
    """-inf / NaN logprobs as -9999.0, as vLLM's OpenAI server sends them (JSON has no infinity)."""
    return max(float(lp), -9999.0) if not math.isnan(lp) else -9999.0
