"""``LlavaQwenConfig``: an lmms-lab (``llava_qwen``) ``config.json`` read as a transformers ``LlavaConfig``.

:func:`register_config` registers it with transformers' ``AutoConfig`` under ``"llava_qwen"``; vLLM
reads checkpoint configs through ``AutoConfig``, so after registration an lmms-lab folder loads like an
``llava-hf`` one (``hf_overrides`` then route either to the adapter class). Imports transformers, not
vLLM.
"""

from __future__ import annotations

from typing import Any

from transformers import AutoConfig, LlavaConfig

from .lmms_lab import MODEL_TYPE, TEXT_KEYS, translate_config


class LlavaQwenConfig(LlavaConfig):
    """A ``LlavaConfig`` built from the flat fields of an lmms-lab ``config.json``.

    Constructed from an lmms-lab config (no ``text_config``), it translates the fields with
    :func:`model_adapter.lmms_lab.translate_config` (``ValueError`` for an unknown vision tower and the
    other unsupported settings listed there). Constructed from its own ``to_dict()`` (which has
    ``text_config``), it is a plain ``LlavaConfig`` with ``model_type`` ``"llava_qwen"``, so configs
    survive serialisation between vLLM's processes unchanged. Extra attribute:
    ``vision_tower_num_layers``, the SigLIP layers stored in the checkpoint (27; the model uses
    ``vision_config.num_hidden_layers`` = 26 of them).
    """

    model_type = MODEL_TYPE

    def __post_init__(self, **kwargs: Any) -> None:
        if (
            self.text_config is None
            and self.vision_config is None
            and ("mm_vision_tower" in kwargs or "vocab_size" in kwargs)
        ):
            flat = dict(kwargs)
            flat["tie_word_embeddings"] = self.tie_word_embeddings
            if self.dtype is not None and "torch_dtype" not in flat:
                flat["torch_dtype"] = str(self.dtype).removeprefix("torch.")
            translated = translate_config(flat)
            self.vision_config = translated.pop("vision_config")
            self.text_config = translated.pop("text_config")
            for field in (
                "image_token_index",
                "image_seq_length",
                "vision_feature_layer",
                "vision_feature_select_strategy",
                "projector_hidden_act",
                "multimodal_projector_bias",
                "tie_word_embeddings",
            ):
                setattr(self, field, translated.pop(field))
            translated.pop("model_type", None)
            kwargs = {k: v for k, v in translated.items() if k not in TEXT_KEYS}
            if "torch_dtype" in flat:  # the top-level dtype, as LlavaConfig reads it
                kwargs["torch_dtype"] = flat["torch_dtype"]
        super().__post_init__(**kwargs)


def register_config() -> None:
    """Register :class:`LlavaQwenConfig` with ``AutoConfig`` for ``model_type`` ``"llava_qwen"``
    (idempotent)."""
    AutoConfig.register(MODEL_TYPE, LlavaQwenConfig, exist_ok=True)
