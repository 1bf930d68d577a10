"""Checkpoint key layouts of LLaVA-NeXT-Interleave and their mapping to the adapter's module names.

The adapter's modules are named like the published checkpoints (transformers < 4.52):
``vision_tower.vision_model.*``, ``multi_modal_projector.linear_{1,2}.*``, ``language_model.model.*``,
``language_model.lm_head.*``. Three layouts are seen in the wild (docs/adapter.md, "Checkpoint key layouts") and all load:

- transformers < 4.52 (the published ``llava-hf`` files): already our names.
- transformers >= 4.52: ``model.language_model.*``, ``model.vision_tower.vision_model.*``,
  ``model.multi_modal_projector.*``, ``lm_head.*``.
- transformers 5.x ``save_pretrained``: as above but ``model.vision_tower.embeddings.*`` (the vision
  tower without its ``vision_model`` level).

The authors' own ``lmms-lab`` checkpoints (``LlavaQwenForCausalLM``) load too:
``model.vision_tower.vision_tower.vision_model.*`` (all 27 SigLIP layers; the 27th is unused and
skipped), ``model.mm_projector.{0,2}.*``, ``model.{layers,embed_tokens,norm}.*``, ``lm_head.*`` and an
unused ``model.image_newline`` (skipped).

This module has no vLLM import: the key mapping is plain regular expressions, wrapped into vLLM's
``WeightsMapper`` by the model class.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

KEY_REWRITES: dict[str, str] = {
    # lmms-lab (LlavaQwenForCausalLM): the authors' own layout; first, before the rules below
    r"^model\.vision_tower\.vision_tower\.": "vision_tower.",
    r"^model\.mm_projector\.0\.": "multi_modal_projector.linear_1.",
    r"^model\.mm_projector\.2\.": "multi_modal_projector.linear_2.",
    r"^model\.(layers|embed_tokens|norm)\.": r"language_model.model.\1.",
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


def check_complete(
    seen_keys: set[str], param_names: Iterable[str], name_in_checkpoint: Callable[[str], str] | None = None
) -> None:
    """Raise if a checkpoint did not provide every tensor of the model.

    Args:
        seen_keys: canonical keys the checkpoint provided.
        param_names: the model's parameter names.
        name_in_checkpoint: how the error spells a canonical key (e.g. :func:`to_lmms_lab` for an
            lmms-lab checkpoint); default: the canonical (published llava-hf) name.

    Raises:
        MissingWeightsError: naming the first missing tensor (sorted) and how many more are missing.
    """
    missing = sorted(expected_checkpoint_keys(param_names) - seen_keys)
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        first = missing[0]
        if name_in_checkpoint is not None:
            try:
                first = name_in_checkpoint(first)
            except ValueError:  # no name in that layout: keep the canonical one
                pass
        raise MissingWeightsError(
            f"checkpoint is missing tensor {first!r}{more}; it is not a complete LLaVA-Interleave checkpoint"
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
            key = new + key[len(old) :]
            break
    if layout == "hf5":
        key = key.replace("model.vision_tower.vision_model.", "model.vision_tower.", 1)
    return key


LMMS_LAB_UNUSED = ("model.image_newline",)
"""lmms-lab tensors the reference interleave inference never reads (the anyres newline embedding)."""

_VISION_LAYER = re.compile(r"^vision_tower\.vision_model\.encoder\.layers\.(\d+)\.")


def vision_layer_index(canonical: str) -> int | None:
    """The SigLIP encoder layer a canonical key belongs to, or None."""
    m = _VISION_LAYER.match(canonical)
    return int(m.group(1)) if m else None


def is_unused_tensor(key: str, *, vision_layers: int, stored_vision_layers: int) -> bool:
    """Whether a checkpoint tensor is stored but deliberately not loaded.

    Args:
        key: the checkpoint key (any layout).
        vision_layers: SigLIP layers the model runs (``vision_config.num_hidden_layers``, 26).
        stored_vision_layers: SigLIP layers the checkpoint's tower has (27 for lmms-lab, where the
            last one is unused; equal to ``vision_layers`` for the llava-hf conversions).

    Returns:
        True for ``model.image_newline`` of an lmms-lab checkpoint (``stored_vision_layers >
        vision_layers``) and for SigLIP layers ``vision_layers .. stored_vision_layers - 1``; False
        otherwise (a layer at or past ``stored_vision_layers`` is an unexpected tensor, not skipped).
    """
    if stored_vision_layers > vision_layers and key in LMMS_LAB_UNUSED:
        return True
    layer = vision_layer_index(canonical_key(key))
    return layer is not None and vision_layers <= layer < stored_vision_layers


def to_lmms_lab(key: str) -> str:
    """Rewrite a canonical (published llava-hf) key into the lmms-lab layout (checkpoint builder).

    Raises:
        ValueError: for a key outside the vision tower, projector and language model.
    """
    for old, new in (
        ("vision_tower.", "model.vision_tower.vision_tower."),
        ("multi_modal_projector.linear_1.", "model.mm_projector.0."),
        ("multi_modal_projector.linear_2.", "model.mm_projector.2."),
        ("language_model.model.", "model."),
        ("language_model.lm_head.", "lm_head."),
    ):
        if key.startswith(old):
            return new + key[len(old) :]
    raise ValueError(f"no lmms-lab name for tensor {key!r}")
