"""Visual token geometry of LLaVA-NeXT-Interleave: the single source of truth for token counts.

The count comes from the vision config, never from ``LlavaConfig.image_seq_length`` (which defaults
to 576, a LLaVA-1.5 number): SigLIP-so400m at 384x384 with patch 14 gives (384 // 14)^2 = 27 * 27 =
729 patch tokens and no CLS token, and ``vision_feature_select_strategy: "full"`` keeps all of them
(docs/adapter.md, "Modalities and tokens"; checked against the published
``llava-hf/llava-interleave-qwen-*-hf`` configs).
"""

from __future__ import annotations

from typing import Any


def _get(cfg: Any, name: str) -> Any:
    return cfg[name] if isinstance(cfg, dict) else getattr(cfg, name)


def num_image_tokens(vision_config: Any, *, select_strategy: str = "full") -> int:
    """Visual tokens one image (or one video frame, or one 3D view) occupies in the prompt.

    Args:
        vision_config: a ``SiglipVisionConfig`` or its dict, with ``image_size`` and ``patch_size``
            (pixels).
        select_strategy: ``vision_feature_select_strategy`` of the LLaVA config; ``"default"`` drops a
            CLS token, which SigLIP does not have, so both give the same count here.

    Returns:
        ``(image_size // patch_size) ** 2`` tokens, 729 for the published checkpoints.

    Raises:
        ValueError: on an unknown ``select_strategy``.
    """
    if select_strategy not in ("full", "default"):
        raise ValueError(f"unknown vision_feature_select_strategy {select_strategy!r}")
    grid = int(_get(vision_config, "image_size")) // int(_get(vision_config, "patch_size"))
    return grid * grid


def num_video_tokens(vision_config: Any, num_frames: int) -> int:
    """Visual tokens of a video item: ``num_frames`` x tokens per frame (no separators, no pooling).

    The reference (LLaVA-NeXT-Interleave) encodes every sampled frame as a full image.

    Raises:
        ValueError: if ``num_frames`` < 1.
    """
    if num_frames < 1:
        raise ValueError("a video needs at least one frame")
    return num_frames * num_image_tokens(vision_config)


SIGLIP_SO400M_PATCH14_384 = "google/siglip-so400m-patch14-384"
"""The vision tower named by the published ``lmms-lab/llava-next-interleave-qwen-*`` configs."""

TINY_SIGLIP_PATCH14_384 = "llava-interleave-serve/tiny-siglip-patch14-384"
"""This project's tiny test tower (``python -m model_adapter.checkpoint --size tiny --layout lmms-lab``):
the real 384/14 geometry with hidden 128, 3 layers, 2 heads of 64. Not a hub model."""

VISION_TOWERS: dict[str, dict[str, Any]] = {
    # google/siglip-so400m-patch14-384, config.json "vision_config" (SiglipVisionConfig defaults for
    # the fields it leaves out: hidden_act gelu_pytorch_tanh, layer_norm_eps 1e-6, 3 channels). The
    # same numbers are in the llava-hf conversions' vision_config, which keep 26 of these 27 layers;
    # no pooling head (the reference replaces it by nn.Identity; llava-hf: vision_use_head false).
    SIGLIP_SO400M_PATCH14_384: {
        "hidden_size": 1152,
        "intermediate_size": 4304,
        "num_hidden_layers": 27,
        "num_attention_heads": 16,
        "image_size": 384,
        "patch_size": 14,
        "num_channels": 3,
        "hidden_act": "gelu_pytorch_tanh",
        "layer_norm_eps": 1e-6,
        "attention_dropout": 0.0,
        "vision_use_head": False,
    },
    # Ours (model_adapter.checkpoint "tiny" plus the one unused last layer an lmms-lab tower has).
    TINY_SIGLIP_PATCH14_384: {
        "hidden_size": 128,
        "intermediate_size": 256,
        "num_hidden_layers": 3,
        "num_attention_heads": 2,
        "image_size": 384,
        "patch_size": 14,
        "num_channels": 3,
        "hidden_act": "gelu_pytorch_tanh",
        "layer_norm_eps": 1e-6,
        "attention_dropout": 0.0,
        "vision_use_head": False,
    },
}
"""SigLIP geometry of every vision tower an lmms-lab checkpoint may name (``mm_vision_tower``).

Those checkpoints store the tower's weights but not its configuration, which the reference code
fetches from the hub by name at load time; we never do, so the numbers live here."""


def vision_tower_config(name: str) -> dict[str, Any]:
    """The ``SiglipVisionConfig`` fields (a new dict, ``model_type`` included) of a named tower.

    Args:
        name: ``mm_vision_tower`` of an lmms-lab config, e.g. ``google/siglip-so400m-patch14-384``.

    Raises:
        ValueError: for a tower not in :data:`VISION_TOWERS`, naming it and the known ones.
    """
    try:
        fields = VISION_TOWERS[name]
    except KeyError:
        raise ValueError(
            f"unknown vision tower {name!r} (mm_vision_tower): its SigLIP geometry is not known "
            f"here and is never fetched from a model hub; known towers: {sorted(VISION_TOWERS)}"
        ) from None
    return {"model_type": "siglip_vision_model", **fields}
