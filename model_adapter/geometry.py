"""Visual token geometry of LLaVA-NeXT-Interleave: the single source of truth for token counts.

The count comes from the vision config, never from ``LlavaConfig.image_seq_length`` (which defaults
to 576, a LLaVA-1.5 number): SigLIP-so400m at 384x384 with patch 14 gives (384 // 14)^2 = 27 * 27 =
729 patch tokens and no CLS token, and ``vision_feature_select_strategy: "full"`` keeps all of them
(DESIGN.md, checked against the published ``llava-hf/llava-interleave-qwen-*-hf`` configs).
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
