"""Checkpoint key layouts of LLaVA-NeXT-Interleave and their mapping to the adapter's module names.

The adapter's modules are named like the published checkpoints (transformers < 4.52):
``vision_tower.vision_model.*``, ``multi_modal_projector.linear_{1,2}.*``, ``language_model.model.*``,
``language_model.lm_head.*``. Three layouts are seen in the wild (DESIGN.md) and all load:

- transformers < 4.52 (the published ``llava-hf`` files): already our names.
- transformers >= 4.52: ``model.language_model.*``, ``model.vision_tower.vision_model.*``,
  ``model.multi_modal_projector.*``, ``lm_head.*``.
- transformers 5.x ``save_pretrained``: as above but ``model.vision_tower.embeddings.*`` (the vision
  tower without its ``vision_model`` level).

This module has no vLLM import: the key mapping is plain regular expressions, wrapped into vLLM's
``WeightsMapper`` by the model class.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

KEY_REWRITES: dict[str, str] = {
    # transformers >= 4.52
    r"^model\.language_model\.": "language_model.model.",
    r"^model\.vision_tower\.": "vision_tower.",
    r"^model\.multi_modal_projector\.": "multi_modal_projector.",
    r"^lm_head\.": "language_model.lm_head.",
    # transformers 5.x: the vision tower without its `vision_model` level
    r"^vision_tower\.(?!vision_model\.)": "vision_tower.vision_model.",
}
"""Ordered regex rewrites applied to every checkpoint key (each rewrite sees the previous result)."""

_COMPILED = {re.compile(k): v for k, v in KEY_REWRITES.items()}

PACKED_MODULES: dict[str, list[str]] = {
    "qkv_proj": ["q_proj", "k_proj", "v_proj"],
    "gate_up_proj": ["gate_proj", "up_proj"],
}
"""vLLM fuses these checkpoint projections into one parameter (the Qwen2 and SigLIP layers)."""


def canonical_key(key: str) -> str:
    """Map a checkpoint key of any supported layout to the adapter's parameter naming."""
    for pattern, repl in _COMPILED.items():
        key = pattern.sub(repl, key)
    return key


def expected_checkpoint_keys(param_names: Iterable[str]) -> set[str]:
    """The checkpoint keys (canonical layout) that must be present to fill ``param_names``.

    Fused vLLM parameters (``...qkv_proj.weight``) expand to their checkpoint parts
    (``...q_proj.weight``, ``...k_proj.weight``, ``...v_proj.weight``).
    """
    keys: set[str] = set()
    for name in param_names:
        for fused, parts in PACKED_MODULES.items():
            token = f".{fused}."
            if token in name:
                keys.update(name.replace(token, f".{part}.") for part in parts)
                break
        else:
            keys.add(name)
    return keys


class MissingWeightsError(ValueError):
    """A checkpoint lacks tensors the model needs; the message names the first one."""


def check_complete(seen_keys: set[str], param_names: Iterable[str]) -> None:
    """Raise if a checkpoint did not provide every tensor of the model.

    Args:
        seen_keys: canonical keys the checkpoint provided.
        param_names: the model's parameter names.

    Raises:
        MissingWeightsError: naming the first missing tensor (sorted) and how many more are missing.
    """
    missing = sorted(expected_checkpoint_keys(param_names) - seen_keys)
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise MissingWeightsError(
            f"checkpoint is missing tensor {missing[0]!r}{more}; "
            "it is not a complete LLaVA-Interleave checkpoint"
        )


LAYOUTS = ("published", "hf452", "hf5")
"""Key layouts :func:`to_layout` writes: the published files (transformers < 4.52), transformers
>= 4.52, and transformers 5.x ``save_pretrained``."""


def to_layout(key: str, layout: str) -> str:
    """Rewrite a canonical (published-layout) checkpoint key into another layout.

    Used to produce checkpoints in every layout for the loader tests.

    Raises:
        ValueError: on an unknown layout.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; expected one of {LAYOUTS}")
    if layout == "published":
        return key
    for old, new in (
        ("language_model.model.", "model.language_model."),
        ("language_model.lm_head.", "lm_head."),
        ("vision_tower.", "model.vision_tower."),
        ("multi_modal_projector.", "model.multi_modal_projector."),
    ):
        if key.startswith(old):
            key = new + key[len(old):]
            break
    if layout == "hf5":
        key = key.replace("model.vision_tower.vision_model.", "model.vision_tower.", 1)
    return key
