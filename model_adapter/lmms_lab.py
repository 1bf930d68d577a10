"""The authors' own checkpoint layout (``lmms-lab/llava-next-interleave-qwen-*``) as a LLaVA-HF config.

The published ``lmms-lab/llava-next-interleave-qwen-0.5b``, ``-7b`` and ``-7b-dpo`` say
``architectures: ["LlavaQwenForCausalLM"]``, ``model_type: "llava_qwen"``: a flat Qwen2 config
(``hidden_size``, ``num_hidden_layers``, ``vocab_size`` 152000, ... at the top level) plus ``mm_*``
fields naming the vision tower (``mm_vision_tower: "google/siglip-so400m-patch14-384"``), its feature
layer (``mm_vision_select_layer: -2``) and the projector (``mm_projector_type: "mlp2x_gelu"``).
:func:`translate_config` turns that into the fields of a transformers ``LlavaConfig`` as the
``llava-hf`` conversion has them, so that one adapter class serves both layouts:

- ``vision_config``: the named tower's SigLIP geometry (:data:`model_adapter.geometry.VISION_TOWERS`,
  never fetched from a hub) with its last layer removed. The reference tower
  (LLaVA-NeXT ``SigLipVisionTower.load_model``) deletes the last of the 27 encoder layers and reads the
  output of the remaining 26 before the post-layernorm, which is ``mm_vision_select_layer: -2`` of
  27 layers and ``vision_feature_layer: -1`` of 26. The checkpoint still stores the 27th layer; the
  loader skips it (``vision_tower_num_layers`` records the stored depth).
- ``text_config``: a ``qwen2`` config from the top-level fields.
- projector ``mlp2x_gelu`` (``Linear, GELU, Linear``) = ``projector_hidden_act: "gelu"``, with biases.
- ``image_token_index``: the tokenizer has no ``<image>`` token (the reference splices image features
  at the sentinel id -200, never a real token). vLLM needs a non-negative id that passes its
  out-of-vocabulary check (ids up to ``vocab_size - 1``), so the placeholder is the last embedding
  row, ``vocab_size - 1`` (151999): the published Qwen1.5 tokenizer's ids end at 151645, and the
  adapter and the server refuse a tokenizer that uses this id. Its embedding row is never read (the
  image features replace it).
- ``image_aspect_ratio: "anyres"`` and ``mm_patch_merge_type: "spatial_unpad"`` are not used by the
  reference interleave inference (every image is resized to 384x384: 729 tokens, no newline token),
  so ``model.image_newline`` is not used either.

No vLLM and no transformers import: :mod:`model_adapter.config` wraps this into a config class, and the
server's prompt builder reads it on machines without an engine.
"""

from __future__ import annotations

from typing import Any

from . import geometry

MODEL_TYPE = "llava_qwen"
"""``model_type`` of the lmms-lab checkpoints."""
ARCHITECTURE = "LlavaQwenForCausalLM"
"""``architectures[0]`` of the lmms-lab checkpoints."""

TEXT_KEYS = (
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "hidden_act",
    "max_position_embeddings",
    "initializer_range",
    "rms_norm_eps",
    "use_cache",
    "tie_word_embeddings",
    "rope_theta",
    "rope_scaling",
    "use_sliding_window",
    "sliding_window",
    "max_window_layers",
    "attention_dropout",
    "bos_token_id",
    "eos_token_id",
    "torch_dtype",
)
"""Top-level fields of an lmms-lab config that belong to its Qwen2 language model."""


def is_lmms_lab_config(config: dict[str, Any]) -> bool:
    """Whether a ``config.json`` dict is an lmms-lab (``llava_qwen``) config."""
    return config.get("model_type") == MODEL_TYPE


def image_token_id(vocab_size: int) -> int:
    """The image placeholder id of an lmms-lab checkpoint: the last embedding row, ``vocab_size - 1``."""
    return int(vocab_size) - 1


def kept_vision_layers(tower_layers: int, select_layer: int) -> int:
    """SigLIP encoder layers that the features pass through.

    Args:
        tower_layers: layers of the named tower (27 for so400m).
        select_layer: ``mm_vision_select_layer``; hidden state ``select_layer`` of ``tower_layers + 1``
            (embeddings, then each layer) is the output of ``tower_layers + 1 + select_layer`` layers.

    Raises:
        ValueError: unless ``select_layer`` is -2, the only value the reference SigLIP tower
            implements (it always drops the last layer, whatever the config says).
    """
    if select_layer != -2:
        raise ValueError(
            f"mm_vision_select_layer {select_layer} is not supported: the reference SigLIP tower always "
            "uses the output of its second-to-last layer (-2)"
        )
    return tower_layers + 1 + select_layer


def translate_config(config: dict[str, Any]) -> dict[str, Any]:
    """The ``LlavaConfig`` fields of an lmms-lab ``config.json`` (see the module docstring).

    Args:
        config: the lmms-lab ``config.json`` as a dict (not modified).

    Returns:
        A new dict: ``vision_config`` and ``text_config`` (dicts), ``image_token_index``,
        ``vision_feature_layer`` -1, ``vision_feature_select_strategy`` ``"full"``,
        ``projector_hidden_act`` ``"gelu"``, ``multimodal_projector_bias``, ``image_seq_length``,
        ``tie_word_embeddings``, ``vision_tower_num_layers`` (layers stored in the checkpoint), and every
        other field of ``config`` that is not a text field (``mm_*``, ``image_aspect_ratio``, ...).

    Raises:
        ValueError: for an unknown vision tower, a projector other than ``mlp2x_gelu``, an
            ``mm_hidden_size`` that is not the tower's width, ``mm_use_im_start_end`` /
            ``mm_use_im_patch_token`` (extra image tokens the adapter does not insert), or an
            unsupported ``mm_vision_select_layer``.
    """
    tower_name = config.get("mm_vision_tower") or config.get("vision_tower")
    if not tower_name:
        raise ValueError("llava_qwen config has no mm_vision_tower: cannot tell the vision tower")
    vision = geometry.vision_tower_config(str(tower_name))
    tower_layers = int(vision["num_hidden_layers"])
    keep = kept_vision_layers(tower_layers, int(config.get("mm_vision_select_layer", -2)))
    projector = config.get("mm_projector_type", "linear")
    if projector != "mlp2x_gelu":
        raise ValueError(
            f"mm_projector_type {projector!r} is not supported (LLaVA-Interleave uses 'mlp2x_gelu')"
        )
    mm_hidden = config.get("mm_hidden_size")
    if mm_hidden is not None and int(mm_hidden) != vision["hidden_size"]:
        raise ValueError(
            f"mm_hidden_size {mm_hidden} does not match the width {vision['hidden_size']} of {tower_name!r}"
        )
    for flag in ("mm_use_im_start_end", "mm_use_im_patch_token"):
        if config.get(flag):
            raise ValueError(f"{flag}: true is not supported (LLaVA-Interleave checkpoints set it false)")
    if "vocab_size" not in config:
        raise ValueError("llava_qwen config has no vocab_size")

    text = {k: config[k] for k in TEXT_KEYS if k in config}
    text.update(model_type="qwen2", architectures=["Qwen2ForCausalLM"])
    vision["num_hidden_layers"] = keep
    rest = {k: v for k, v in config.items() if k not in TEXT_KEYS and k not in ("model_type",)}
    return {
        **rest,
        "model_type": MODEL_TYPE,
        "vision_config": vision,
        "text_config": text,
        "image_token_index": image_token_id(config["vocab_size"]),
        "image_seq_length": geometry.num_image_tokens(vision),
        "vision_feature_layer": -1,
        "vision_feature_select_strategy": "full",
        "projector_hidden_act": "gelu",
        "multimodal_projector_bias": True,
        "tie_word_embeddings": bool(config.get("tie_word_embeddings", False)),
        "vision_tower_num_layers": tower_layers,
    }
