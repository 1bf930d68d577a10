"""vLLM out-of-tree plugin for LLaVA-NeXT-Interleave (arXiv 2407.07895).

SigLIP vision tower + two-layer GELU MLP projector + Qwen1.5 (``qwen2``) language model, served by
vLLM for two modalities: ``image`` (one 384x384 image -> 729 visual tokens) and ``video`` (an array of
frames, each frame encoded like an image, placeholders laid out exactly as consecutive images).

Importing this package does not import vLLM: :func:`register` registers the model by a lazy
``"module:Class"`` string, as vLLM's own plugins do, so the server's lightweight modules and the
checkpoint builder can import ``model_adapter`` on machines without an engine.
"""

from __future__ import annotations

ARCHITECTURE = "LlavaInterleaveForConditionalGeneration"
"""The architecture name our adapter registers in vLLM's model registry."""

_MODEL_CLASS_PATH = "model_adapter.model:LlavaInterleaveForConditionalGeneration"

LMMS_LAB_ARCHITECTURE = "LlavaQwenForCausalLM"
"""The architecture of the authors' own ``lmms-lab`` checkpoints; registered as an alias of the adapter,
so those folders load even without :func:`hf_overrides`."""


def hf_overrides() -> dict[str, list[str]]:
    """Engine ``hf_overrides`` that route any LLaVA-Interleave HF checkpoint to this adapter.

    The published checkpoints say ``architectures: ["LlavaForConditionalGeneration"]`` (llava-hf) or
    ``["LlavaQwenForCausalLM"]`` (lmms-lab, config type ``llava_qwen`` registered by :func:`register`);
    overriding the architecture at load time means their ``config.json`` needs no edit.

    Returns:
        ``{"architectures": ["LlavaInterleaveForConditionalGeneration"]}``.
    """
    return {"architectures": [ARCHITECTURE]}


def register() -> None:
    """Register the adapter with vLLM's model registry (idempotent).

    Called by vLLM in every process through the ``vllm.general_plugins`` entry point; safe to call
    again. Registration is by lazy string, so the model module (and torch kernels) load only when an
    engine actually builds the model. On the CPU build it also applies
    :func:`model_adapter.seeded_sampling.apply_cpu_fix` (seeded sampling with chunked prefill).
    """
    from vllm import ModelRegistry

    from model_adapter.config import register_config

    register_config()  # lmms-lab "llava_qwen" configs load through transformers' AutoConfig
    for arch in (ARCHITECTURE, LMMS_LAB_ARCHITECTURE):
        if arch not in ModelRegistry.get_supported_archs():
            ModelRegistry.register_model(arch, _MODEL_CLASS_PATH)
    from vllm.platforms import current_platform

    if current_platform.is_cpu():
        from model_adapter.seeded_sampling import apply_cpu_fix

        apply_cpu_fix()  # seeded requests with chunked prefill (see model_adapter.seeded_sampling)


def chat_template_path() -> str:
    """Path of the shipped chat template for vLLM's own server (``--chat-template``).

    It renders image and video parts where they stand (``<image>\\n`` / ``<video>\\n``) in the
    reference ChatML conversation, which the published ``chat_template.json`` does not (it drops
    videos and moves images to the front).
    """
    from pathlib import Path

    return str(Path(__file__).with_name("templates") / "interleave.jinja")


__all__ = ["ARCHITECTURE", "LMMS_LAB_ARCHITECTURE", "chat_template_path", "hf_overrides", "register"]
