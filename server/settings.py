"""Server configuration: one pydantic-settings model read from ``INTERLEAVE_*`` environment variables.

Every field is also a command-line flag of ``interleave-serve`` (see :mod:`server.cli`): the flag is
the field name in kebab case (``max_model_len`` -> ``--max-model-len``), the variable the field name in
upper case with the ``INTERLEAVE_`` prefix (``INTERLEAVE_MAX_MODEL_LEN``). Flags win over variables,
variables over defaults.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."
"""The reference system prompt of LLaVA-NeXT-Interleave's ``qwen_1_5`` conversation template."""

ENV_PREFIX = "INTERLEAVE_"


class ServerSettings(BaseSettings):
    """Everything ``interleave-serve`` can be told; immutable once the app starts."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        extra="ignore",
        frozen=True,
        validate_default=True,
        protected_namespaces=(),
    )

    # --- listening -------------------------------------------------------------------------------
    host: str = Field("127.0.0.1", description="Address to bind.")
    port: int = Field(8000, ge=0, le=65535, description="TCP port to bind (0 picks a free one).")
    keep_alive_timeout_seconds: int = Field(
        75,
        ge=1,
        description="Seconds an idle HTTP/1.1 keep-alive connection stays open (uvicorn's "
        "timeout_keep_alive, whose own default is 5). Keep it above the idle timeout of a load "
        "balancer that reuses connections (nginx upstream keepalive_timeout and AWS ALB: 60 s), or "
        "it may send a request on a connection the server is closing.",
    )
    api_key: str | None = Field(
        None,
        description="If set, /v1/* requires `Authorization: Bearer <key>` (401 otherwise); "
        "/health, /ready and /metrics stay open.",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="Log level.")
    log_format: Literal["text", "json"] = Field(
        "text",
        description="Log lines as text, or `json`: one JSON object per line (ts, level, logger, message, "
        "request_id, and the per-request fields on request lines) for log pipelines.",
    )

    # --- model and engine ------------------------------------------------------------------------
    model: str | None = Field(
        None,
        description="Path of a LLaVA-Interleave checkpoint folder, llava-hf or lmms-lab layout (no chat template "
        "needed). Default: the built-in tiny "
        "checkpoint with RANDOM weights, built on first use into the cache folder "
        "(`$INTERLEAVE_CACHE_DIR`, default ~/.cache/llava-interleave-serve, folder tiny-seed0).",
    )
    served_model_name: str | None = Field(
        None,
        description="Model name in /v1/models and responses. Default: the checkpoint folder name.",
    )
    dtype: str = Field(
        "auto",
        description="Weights and activations dtype (auto, bfloat16, float16, float32). `auto` on the CPU "
        "build: the checkpoint's dtype; on GPUs vLLM's choice (16-bit for float32 checkpoints).",
    )
    max_model_len: int | None = Field(
        None,
        ge=1,
        description="Context length in tokens (prompt incl. 729 per image + output). "
        "Default: the checkpoint's.",
    )
    tensor_parallel_size: int = Field(1, ge=1, description="vLLM tensor parallel size.")
    pipeline_parallel_size: int = Field(1, ge=1, description="vLLM pipeline parallel size.")
    data_parallel_size: int = Field(1, ge=1, description="vLLM data parallel size.")
    distributed_executor_backend: Literal["mp", "ray", "uni"] | None = Field(
        None,
        description="vLLM executor of the tensor / pipeline parallel workers: `mp` (processes on this "
        "node), `ray` (Ray actors in the replica's placement group; spans nodes), `uni` (one process). "
        "Default: vLLM's choice (`mp` when the workers fit on this node).",
    )
    gpu_memory_utilization: float = Field(
        0.9,
        gt=0.0,
        le=1.0,
        description="Fraction of accelerator memory vLLM may use (on the CPU build: of host memory; "
        "the KV cache size there is VLLM_CPU_KVCACHE_SPACE GiB).",
    )
    kv_cache_memory_gib: float | None = Field(
        None,
        gt=0,
        description="KV cache size in GiB (vLLM kv_cache_memory_bytes; overrides the memory fraction). "
        "On the CPU build, VLLM_CPU_KVCACHE_SPACE wins if set, and without either the server uses "
        "2 GiB.",
    )
    enable_prefix_caching: bool = Field(True, description="vLLM automatic prefix caching.")
    mm_processor_cache_gb: float = Field(
        1.0,
        ge=0,
        description="vLLM's multimodal processor cache in GiB (processed images by content hash; "
        "vLLM's default is 4 GiB per engine; 0 disables).",
    )
    max_num_seqs: int | None = Field(None, ge=1, description="Max sequences per batch (vLLM default).")
    encoder_cache_tokens: int = Field(
        16384,
        ge=0,
        description="Vision-encoder output cache in tokens (729 per image or frame; 16384 = 22 images): "
        "repeated images and frames across requests are encoded once while they stay in it.",
    )
    max_num_batched_tokens: int | None = Field(
        None,
        ge=1,
        description="Max tokens scheduled in one engine step (prefill chunk size; vLLM default).",
    )
    enforce_eager: bool = Field(False, description="Disable CUDA graphs / compilation in vLLM.")
    seed: int = Field(0, description="Engine seed (a request's `seed` overrides it for that request).")
    scheduling_policy: Literal["fcfs", "priority"] = Field(
        "fcfs",
        description="vLLM scheduling policy: fcfs (first come, first served) or priority (a request's "
        "`priority` field orders the queue, lower first; with fcfs a nonzero `priority` is a 400).",
    )
    disable_log_stats: bool = Field(
        False, description="Disable vLLM's stat loggers (also removes vLLM's own vllm:* metrics)."
    )

    # --- prompt ----------------------------------------------------------------------------------
    default_system_prompt: str = Field(
        DEFAULT_SYSTEM_PROMPT,
        description='System prompt added when a conversation has no system message ("" disables).',
    )
    default_max_tokens: int = Field(
        2048,
        ge=1,
        description="max_tokens when a request gives none: this cap, or what is left of the "
        "context if that is less.",
    )

    # --- limits ----------------------------------------------------------------------------------
    max_images_per_request: int = Field(16, ge=0, description="Max image_url parts in one request.")
    max_frames_per_request: int = Field(
        32,
        ge=0,
        description="Max sampled video frames in one request (all videos together); also the max "
        "`num_frames` of one video.",
    )
    max_views_per_request: int = Field(
        16, ge=0, description="Max 3D scene views in one request (all scene_views parts together)."
    )
    default_num_frames: int = Field(
        16, ge=1, description="Frames sampled from a video that gives no num_frames."
    )
    max_media_bytes: int = Field(
        50 * 1024 * 1024,
        ge=1,
        description="Max bytes of one media item (decoded data URL, file or download).",
    )
    max_image_pixels: int = Field(
        40_000_000, ge=1, description="Max width x height of one image, checked before decoding."
    )
    max_request_bytes: int = Field(
        64 * 1024 * 1024, ge=1, description="Max HTTP request body; larger bodies get 413 before parsing."
    )
    fetch_timeout_seconds: float = Field(10.0, gt=0, description="Timeout for fetching one remote media URL.")
    allowed_media_dir: Path | None = Field(
        None, description="file:// URLs are served only below this folder (none: file:// refused)."
    )
    allowed_remote_hosts: Annotated[tuple[str, ...], NoDecode] = Field(
        (),
        description="Comma-separated hosts that http(s) media URLs may name even if they resolve to "
        "private / loopback addresses (public hosts are always allowed).",
    )
    media_workers: int = Field(
        2,
        ge=1,
        description="Threads that decode media off the event loop (a video's GOPs decode on several "
        "of them at once, beside the request's images).",
    )
    media_cache_gib: float = Field(
        1.0,
        ge=0,
        description="Cache of decoded, resized images and video frames in GiB, keyed by a hash of the "
        "media bytes and the sampling parameters (LRU; 0 disables): a chat that resends its media every "
        "turn decodes them once. 1 GiB holds about 145 videos of 16 frames.",
    )

    # --- playground ------------------------------------------------------------------------------
    playground: bool = Field(
        True,
        description="Serve the browser playground at /playground (and redirect / there): a static page "
        "that sends chats with images, videos and scene views to /v1/chat/completions.",
    )

    # --- admission and deadlines ----------------------------------------------------------------
    max_concurrent_requests: int = Field(
        64,
        ge=1,
        description="Max generation requests admitted at once (preprocessing plus in the engine); past "
        "it a request gets 503 with Retry-After at once.",
    )
    max_images_in_flight: int = Field(
        512,
        ge=1,
        description="Max images, video frames and scene views of all admitted requests together (729 "
        "visual tokens each; a request is counted at its most, before decoding); past it 503 with "
        "Retry-After. A request alone is always admitted.",
    )
    max_request_bytes_in_flight: int = Field(
        1024 * 1024 * 1024,
        ge=1,
        description="Max request body bytes (inline media) held by all admitted requests together; past "
        "it 503 with Retry-After. A request alone is always admitted.",
    )
    request_timeout_seconds: float = Field(
        600.0,
        gt=0,
        description="Deadline of one generation request from arrival: after it the request is aborted "
        "in the engine and answered 504 (or an SSE error event once streaming).",
    )
    body_read_timeout_seconds: float = Field(
        60.0,
        gt=0,
        description="Max seconds to receive a request body; slower uploads get 408 (they are not "
        "admitted while uploading).",
    )

    # --- lifecycle -------------------------------------------------------------------------------
    drain_timeout_seconds: float = Field(
        30.0,
        ge=0,
        description="On SIGTERM: /ready -> 503, new requests 503, in-flight ones finish "
        "for up to this long before the process exits.",
    )

    @field_validator("allowed_remote_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: Any) -> Any:
        if value is None:
            return ()
        if isinstance(value, str):
            return tuple(h.strip() for h in value.split(",") if h.strip())
        return value

    @field_validator("model", "served_model_name", "api_key", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == "" else value

    @model_validator(mode="after")
    def _check(self) -> ServerSettings:
        if self.default_num_frames > max(self.max_frames_per_request, 1):
            raise ValueError("default_num_frames must not exceed max_frames_per_request")
        return self

    @property
    def limit_images_per_prompt(self) -> int:
        """Images the engine accepts in one prompt: images + video frames + scene views."""
        return max(1, self.max_images_per_request + self.max_frames_per_request + self.max_views_per_request)
