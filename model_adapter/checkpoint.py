"""Builds LLaVA-NeXT-Interleave checkpoints with random weights in the published HF layout.

No model hub is reachable from our CI machines, so tests and the default server model use a tiny
checkpoint that this module writes: the real ``config.json`` fields and semantics of
``llava-hf/llava-interleave-qwen-0.5b-hf`` (``image_token_index`` 151646, ``vision_feature_layer``
-1, strategy ``full``, 384/14 geometry so an image is 729 tokens, vocab 152000, eos ``<|im_end|>`` =
151645), ``model.safetensors`` in the published key layout (transformers < 4.52:
``language_model.model.*``, ``vision_tower.vision_model.*``, ``multi_modal_projector.*``), a
byte-level BPE tokenizer trained on the fly with the ChatML specials and ``<image>`` at their real
ids, ``preprocessor_config.json``, ``processor_config.json`` and ``chat_template.json``.

``--size 0.5b`` and ``--size 7b`` write random weights at the real architecture sizes (bfloat16,
sharded) for GPU benchmarks.

``--layout lmms-lab`` writes the same random weights in the authors' own layout instead
(``lmms-lab/llava-next-interleave-qwen-*``: ``LlavaQwenForCausalLM``, ``model_type: llava_qwen``, a
flat Qwen2 config with ``mm_*`` fields, ``model.vision_tower.vision_tower.vision_model.*`` with one
more (unused) SigLIP layer, ``model.mm_projector.{0,2}``, ``model.layers.*``, an unused
``model.image_newline``, a tokenizer without ``<image>`` whose ids end at 151645, no chat template and
no processor files).

Usage::

    python -m model_adapter.checkpoint --size tiny --out DIR [--seed 0] [--layout hf|lmms-lab]
"""

from __future__ import annotations

import argparse
import fcntl
import itertools
import json
import logging
import math
import os
import shutil
import string
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from . import geometry
from .weights import canonical_key, to_lmms_lab

logger = logging.getLogger(__name__)

# Token ids of the published Qwen1.5 tokenizer plus llava-hf's added ``<image>``.
ENDOFTEXT_ID = 151643
IM_START_ID = 151644
IM_END_ID = 151645
IMAGE_TOKEN_ID = 151646
SPECIAL_TOKENS = {
    "<|endoftext|>": ENDOFTEXT_ID,
    "<|im_start|>": IM_START_ID,
    "<|im_end|>": IM_END_ID,
    "<image>": IMAGE_TOKEN_ID,
}
VOCAB_SIZE = 152000
"""Rows of the embedding matrix of every Qwen1.5 size (``text_config.vocab_size``)."""

LAYOUT_CHOICES = ("hf", "lmms-lab")
"""Checkpoint layouts the builder writes: the llava-hf conversion and the authors' lmms-lab one."""

# The chat template shipped in the published llava-hf interleave checkpoints: ChatML, and every image
# of a message rendered before its text ("in the front"), one "<image>\n" each.
HF_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{'<|im_start|>' + message['role'] + '\\n'}}"
    "{# Render all images first #}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<image>\\n' }}"
    "{% endfor %}"
    "{# Render all text next #}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ content['text'] }}"
    "{% endfor %}"
    "{{'<|im_end|>\\n'}}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

_CORPUS = """
A video is a sequence of frames and every frame is an image. A scene seen from several cameras is a
set of views, and every view is an image. The model reads images and text in the order they stand.
What is in the first picture? The second picture shows a red car parked near a tall building.
Describe the difference between these two images. How many people are in the video? The cat sits
on the table while the dog sleeps under the chair. The camera moves from the left to the right.
Answer the question using a single word or phrase. Which view shows the kitchen? The sky is blue
and the grass is green. There are three apples, two bananas and one orange on the plate.
The quick brown fox jumps over the lazy dog. A person is walking down the street holding an umbrella.
Please summarize what happens at the beginning, in the middle and at the end of the clip.
User: hello, can you help me? Assistant: of course, what would you like to know about the images?
Numbers: 0 1 2 3 4 5 6 7 8 9 10 16 32 64 100 384 729 1024 2024.
"""


@dataclass(frozen=True)
class ModelSize:
    """Architecture sizes of one checkpoint flavour (from the published configs; tiny is ours)."""

    vision_hidden: int
    vision_intermediate: int
    vision_layers: int
    vision_heads: int
    text_hidden: int
    text_intermediate: int
    text_layers: int
    text_heads: int
    text_kv_heads: int
    tie_word_embeddings: bool
    dtype: str


SIZES: dict[str, ModelSize] = {
    # Head size 64 everywhere: vLLM's CPU attention supports 64 and 128, not 16 (docs/adapter.md).
    "tiny": ModelSize(128, 256, 2, 2, 128, 256, 2, 2, 2, False, "float32"),
    # llava-interleave-qwen-0.5b-hf: SigLIP-so400m with 26 of 27 layers, Qwen1.5-0.5B.
    "0.5b": ModelSize(1152, 4304, 26, 16, 1024, 2816, 24, 16, 16, True, "bfloat16"),
    # llava-interleave-qwen-7b-hf: SigLIP-so400m with 26 of 27 layers, Qwen1.5-7B.
    "7b": ModelSize(1152, 4304, 26, 16, 4096, 11008, 32, 32, 32, False, "bfloat16"),
}


def build_config(size: str = "tiny") -> dict:
    """The ``config.json`` of a LLaVA-Interleave checkpoint of the given size.

    Field names and values follow the published ``llava-hf/llava-interleave-qwen-*-hf`` configs.
    ``image_seq_length`` is written as 729 but nothing in this project reads it.

    Raises:
        KeyError: on an unknown size.
    """
    s = SIZES[size]
    return {
        "architectures": ["LlavaForConditionalGeneration"],
        "transformers_version": "4.45.0",
        "model_type": "llava",
        "ignore_index": -100,
        "image_token_index": IMAGE_TOKEN_ID,
        "image_seq_length": 729,
        "projector_hidden_act": "gelu",
        "multimodal_projector_bias": True,
        "vision_feature_layer": -1,
        "vision_feature_select_strategy": "full",
        "tie_word_embeddings": s.tie_word_embeddings,
        "torch_dtype": s.dtype,
        "vision_config": {
            "model_type": "siglip_vision_model",
            "hidden_size": s.vision_hidden,
            "intermediate_size": s.vision_intermediate,
            "num_hidden_layers": s.vision_layers,
            "num_attention_heads": s.vision_heads,
            "image_size": 384,
            "patch_size": 14,
            "num_channels": 3,
            "hidden_act": "gelu_pytorch_tanh",
            "layer_norm_eps": 1e-6,
            "attention_dropout": 0.0,
            "vision_use_head": False,
        },
        "text_config": {
            "model_type": "qwen2",
            "architectures": ["Qwen2ForCausalLM"],
            "hidden_size": s.text_hidden,
            "intermediate_size": s.text_intermediate,
            "num_hidden_layers": s.text_layers,
            "num_attention_heads": s.text_heads,
            "num_key_value_heads": s.text_kv_heads,
            "hidden_act": "silu",
            "max_position_embeddings": 32768,
            "max_window_layers": 21,
            "rms_norm_eps": 1e-6,
            "rope_theta": 1000000.0,
            "sliding_window": 32768,
            "use_sliding_window": False,
            "vocab_size": VOCAB_SIZE,
            "tie_word_embeddings": s.tie_word_embeddings,
            "bos_token_id": ENDOFTEXT_ID,
            "eos_token_id": IM_END_ID,
            "torch_dtype": s.dtype,
        },
    }


def _filler_tokens() -> Iterator[str]:
    """Byte-level tokens (" ab", " abc", ...) that pad the vocab to its real size.

    They decode to readable pseudo-words, so text sampled from random weights stays printable.
    """
    for n in itertools.count(2):
        for letters in itertools.product(string.ascii_lowercase, repeat=n):
            yield "\u0120" + "".join(letters)  # "Ġ" is the byte-level form of a space


def build_tokenizer_json(vocab_train: int = 1000, *, image_token: bool = True) -> str:
    """Train a byte-level BPE tokenizer and lay its vocab out like Qwen1.5's.

    Ids 0..151642 are ordinary tokens (the trained ones first, then fillers), 151643..151646 the
    specials ``<|endoftext|>``, ``<|im_start|>``, ``<|im_end|>``, ``<image>``, and 151647..151999
    more fillers, so every id the 152000-row embedding can produce decodes to text.

    With ``image_token=False`` (the lmms-lab layout) the vocab is the published Qwen1.5 one's shape:
    no ``<image>`` and nothing after ``<|im_end|>`` (ids end at 151645). Fillers are never produced
    by encoding (no merge makes them), so both tokenizers encode every text identically.

    Returns:
        The ``tokenizer.json`` text.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_train,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([_CORPUS] * 4, trainer=trainer)
    data = json.loads(tok.to_str())
    vocab: dict[str, int] = data["model"]["vocab"]
    fillers = (t for t in _filler_tokens() if t not in vocab)
    next_id = len(vocab)
    while next_id < ENDOFTEXT_ID:
        vocab[next(fillers)] = next_id
        next_id += 1
    specials = {k: v for k, v in SPECIAL_TOKENS.items() if image_token or k != "<image>"}
    for content, token_id in specials.items():
        vocab[content] = token_id
    next_id = IMAGE_TOKEN_ID + 1
    while image_token and next_id < VOCAB_SIZE:
        vocab[next(fillers)] = next_id
        next_id += 1
    data["added_tokens"] = [
        {
            "id": token_id,
            "content": content,
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "special": True,
        }
        for content, token_id in specials.items()
    ]
    data["post_processor"] = None
    return json.dumps(data, ensure_ascii=False)


def _lmms_lab_tokenizer_files() -> dict[str, str]:
    """The lmms-lab tokenizer: Qwen1.5's specials only, no ``<image>``, no chat template.

    ``tokenizer_class`` is the generic fast tokenizer, not ``Qwen2Tokenizer`` as published: for a
    ``model_type`` it does not map itself, transformers 5 builds ``Qwen2Tokenizer`` with Qwen's own
    pre-tokenizer (digits split one by one) instead of the one in our trained ``tokenizer.json``, and
    the two layouts would then tokenize text differently. (The published tokenizer.json already has
    Qwen's pre-tokenizer, so there the class makes no difference.)
    """
    specials = ["<|im_start|>", "<|im_end|>"]
    tokenizer_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": 32768,
        "padding_side": "right",
        "bos_token": None,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "unk_token": None,
        "additional_special_tokens": specials,
        "clean_up_tokenization_spaces": False,
        "errors": "replace",
        "split_special_tokens": False,
    }
    special_tokens_map = {
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "additional_special_tokens": specials,
    }
    return {
        "tokenizer.json": build_tokenizer_json(image_token=False),
        "tokenizer_config.json": json.dumps(tokenizer_config, indent=2),
        "special_tokens_map.json": json.dumps(special_tokens_map, indent=2),
    }


def _tokenizer_files() -> dict[str, str]:
    tokenizer_config = {
        "tokenizer_class": "Qwen2Tokenizer",
        "model_max_length": 32768,
        "bos_token": None,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "unk_token": None,
        "image_token": "<image>",
        "extra_special_tokens": {"image_token": "<image>"},
        "additional_special_tokens": ["<|im_start|>", "<|im_end|>", "<image>"],
        "clean_up_tokenization_spaces": False,
        "errors": "replace",
        "split_special_tokens": False,
        "chat_template": HF_CHAT_TEMPLATE,
    }
    special_tokens_map = {
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "additional_special_tokens": ["<|im_start|>", "<|im_end|>", "<image>"],
    }
    return {
        "tokenizer.json": build_tokenizer_json(),
        "tokenizer_config.json": json.dumps(tokenizer_config, indent=2),
        "special_tokens_map.json": json.dumps(special_tokens_map, indent=2),
    }


def _processor_files() -> dict[str, str]:
    preprocessor = {
        "image_processor_type": "SiglipImageProcessor",
        "processor_class": "LlavaProcessor",
        "do_resize": True,
        "size": {"height": 384, "width": 384},
        "resample": 3,
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
        "do_convert_rgb": True,
    }
    processor = {
        "processor_class": "LlavaProcessor",
        "image_token": "<image>",
        "patch_size": 14,
        "vision_feature_select_strategy": "full",
        "num_additional_image_tokens": 0,
    }
    generation = {"eos_token_id": IM_END_ID, "pad_token_id": ENDOFTEXT_ID}
    return {
        "preprocessor_config.json": json.dumps(preprocessor, indent=2),
        "processor_config.json": json.dumps(processor, indent=2),
        "chat_template.json": json.dumps({"chat_template": HF_CHAT_TEMPLATE}, indent=2),
        "generation_config.json": json.dumps(generation, indent=2),
    }


def lmms_lab_tower(size: str) -> str:
    """The ``mm_vision_tower`` an lmms-lab checkpoint of ``size`` names (the real so400m for 0.5b / 7b,
    this project's tiny tower for tiny), checked against the size's vision geometry.

    Raises:
        KeyError: on an unknown size.
        AssertionError: if :data:`model_adapter.geometry.VISION_TOWERS` and :data:`SIZES` disagree.
    """
    s = SIZES[size]
    name = geometry.TINY_SIGLIP_PATCH14_384 if size == "tiny" else geometry.SIGLIP_SO400M_PATCH14_384
    tower = geometry.VISION_TOWERS[name]
    assert (tower["hidden_size"], tower["intermediate_size"], tower["num_attention_heads"]) == (
        s.vision_hidden,
        s.vision_intermediate,
        s.vision_heads,
    ) and tower["num_hidden_layers"] == s.vision_layers + 1, (name, size)
    return name


def build_lmms_lab_config(size: str = "tiny") -> dict:
    """The ``config.json`` of an lmms-lab (``llava_qwen``) checkpoint of the given size.

    Field names and values follow the published ``lmms-lab/llava-next-interleave-qwen-*`` configs: the
    text fields of :func:`build_config` at the top level, the vision tower by name, select layer -2,
    ``mlp2x_gelu``, ``anyres`` / ``spatial_unpad`` (unused by interleave inference).

    Raises:
        KeyError: on an unknown size.
    """
    hf = build_config(size)
    text = {k: v for k, v in hf["text_config"].items() if k not in ("model_type", "architectures")}
    return {
        "architectures": ["LlavaQwenForCausalLM"],
        "model_type": "llava_qwen",
        "transformers_version": "4.40.0.dev0",
        **text,
        "attention_dropout": 0.0,
        "initializer_range": 0.02,
        "use_cache": True,
        "tokenizer_model_max_length": 32768,
        "tokenizer_padding_side": "right",
        "mm_vision_tower": lmms_lab_tower(size),
        "mm_vision_select_layer": -2,
        "mm_vision_select_feature": "patch",
        "mm_hidden_size": SIZES[size].vision_hidden,
        "mm_projector_type": "mlp2x_gelu",
        "mm_use_im_start_end": False,
        "mm_use_im_patch_token": False,
        "mm_patch_merge_type": "spatial_unpad",
        "mm_resampler_type": None,
        "mm_spatial_pool_stride": None,
        "use_mm_proj": True,
        "image_aspect_ratio": "anyres",
        "image_grid_pinpoints": [[384, 384], [384, 768], [768, 384], [768, 768], [1152, 384], [384, 1152]],
    }


def parameter_shapes(config: dict) -> dict[str, tuple[int, ...]]:
    """Names (published layout) and shapes of every tensor a checkpoint of ``config`` stores.

    The model is instantiated on the meta device, so this costs no memory even at 7B.
    ``vision_tower.vision_model.post_layernorm.*`` is kept (the published checkpoints store it even
    though feature layer -1 is read before it).
    """
    import torch
    from transformers import LlavaConfig, LlavaForConditionalGeneration

    hf_config = LlavaConfig(**config)
    with torch.device("meta"):
        model = LlavaForConditionalGeneration(hf_config)
    # transformers 5.x names -> the published layout (the adapter's canonical key mapping)
    shapes = {canonical_key(k): tuple(v.shape) for k, v in model.state_dict().items()}
    if config["tie_word_embeddings"]:
        shapes.pop("language_model.lm_head.weight", None)
    return shapes


def _init_tensor(name: str, shape: tuple[int, ...], gen, dtype):
    """Random init scaled so that greedy decoding of the tiny model does not collapse.

    Norm weights near 1, biases small, matrices ~ N(0, 1/fan_in) (variance preserving), embeddings
    N(0, 1) so that tokens stay distinguishable through the residual stream.
    """
    import torch

    if name.endswith("norm.weight") or "layer_norm" in name and name.endswith(".weight"):
        t = 1.0 + 0.1 * torch.randn(shape, generator=gen)
    elif name.endswith(".bias"):
        t = 0.05 * torch.randn(shape, generator=gen)
    elif "embed_tokens" in name or "position_embedding" in name:
        t = torch.randn(shape, generator=gen)
    elif "lm_head" in name:
        t = torch.randn(shape, generator=gen) * (2.0 / math.sqrt(shape[-1]))
    else:
        fan_in = math.prod(shape[1:]) if len(shape) > 1 else shape[0]
        t = torch.randn(shape, generator=gen) * (1.5 / math.sqrt(fan_in))
    return t.to(dtype)


def random_tensors(size: str = "tiny", seed: int = 0) -> dict:
    """The random weights of a checkpoint of ``size``: canonical (published llava-hf) name -> tensor.

    Drawn from ``torch.Generator().manual_seed(seed)`` in sorted name order, so both layouts written
    from one seed hold the same numbers.
    """
    import torch

    config = build_config(size)
    dtype = getattr(torch, SIZES[size].dtype)
    shapes = parameter_shapes(config)
    gen = torch.Generator().manual_seed(seed)
    return {name: _init_tensor(name, shapes[name], gen, dtype) for name in sorted(shapes)}


def _lmms_lab_tensors(tensors: dict, size: str, seed: int) -> dict:
    """``tensors`` renamed to the lmms-lab layout, plus what that layout stores and never uses: the
    tower's last SigLIP layer and ``model.image_newline`` (from a second generator, ``seed + 1``)."""
    import torch

    s = SIZES[size]
    gen = torch.Generator().manual_seed(seed + 1)
    out = {to_lmms_lab(name): t for name, t in tensors.items()}
    layer0 = "vision_tower.vision_model.encoder.layers.0."
    last = f"vision_tower.vision_model.encoder.layers.{s.vision_layers}."
    for name in sorted(n for n in tensors if n.startswith(layer0)):
        extra = last + name[len(layer0) :]
        out[to_lmms_lab(extra)] = _init_tensor(extra, tuple(tensors[name].shape), gen, tensors[name].dtype)
    out["model.image_newline"] = _init_tensor(
        "model.image_newline", (s.text_hidden,), gen, tensors["language_model.model.norm.weight"].dtype
    )
    return out


def write_checkpoint(
    out: Path, size: str = "tiny", seed: int = 0, shard_bytes: int = 2 * 2**30, layout: str = "hf"
) -> Path:
    """Write a complete random-weight checkpoint of ``size`` into ``out``.

    Deterministic for a seed (weights from :func:`random_tensors`; the tokenizer is trained
    deterministically). Both layouts of one ``size`` and ``seed`` hold the same weights.

    Args:
        out: target directory (created; existing files are overwritten).
        size: ``"tiny"``, ``"0.5b"`` or ``"7b"``.
        seed: random seed of the weights.
        shard_bytes: maximum bytes per safetensors shard (the tiny model is one file).
        layout: ``"hf"`` (the llava-hf conversion) or ``"lmms-lab"`` (the authors' own layout).

    Returns:
        ``out``.

    Raises:
        ValueError: on an unknown layout.
    """
    from safetensors.torch import save_file

    if layout not in LAYOUT_CHOICES:
        raise ValueError(f"unknown layout {layout!r}; expected one of {LAYOUT_CHOICES}")
    out.mkdir(parents=True, exist_ok=True)
    tensors = random_tensors(size, seed)
    if layout == "lmms-lab":
        tensors = _lmms_lab_tensors(tensors, size, seed)

    shards: list[dict] = [{}]
    used = 0
    for name in sorted(tensors):
        t = tensors[name]
        nbytes = t.numel() * t.element_size()
        if shards[-1] and used + nbytes > shard_bytes:
            shards.append({})
            used = 0
        shards[-1][name] = t
        used += nbytes
    del tensors
    if len(shards) == 1:
        save_file(shards[0], str(out / "model.safetensors"), metadata={"format": "pt"})
    else:
        weight_map = {}
        total = 0
        for i, shard in enumerate(shards, 1):
            fname = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
            save_file(shard, str(out / fname), metadata={"format": "pt"})
            for k, v in shard.items():
                weight_map[k] = fname
                total += v.numel() * v.element_size()
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
        del shards

    if layout == "lmms-lab":
        config = build_lmms_lab_config(size)
        generation = {"bos_token_id": ENDOFTEXT_ID, "eos_token_id": IM_END_ID, "pad_token_id": ENDOFTEXT_ID}
        files = {**_lmms_lab_tokenizer_files(), "generation_config.json": json.dumps(generation, indent=2)}
    else:
        config = build_config(size)
        files = {**_tokenizer_files(), **_processor_files()}
    (out / "config.json").write_text(json.dumps(config, indent=2))
    for fname, text in files.items():
        (out / fname).write_text(text)
    (out / "README.md").write_text(
        f"Random-weight LLaVA-NeXT-Interleave checkpoint, size {size}, seed {seed}, layout {layout}, "
        "written by `python -m model_adapter.checkpoint`. Its answers are meaningless.\n"
    )
    return out


def default_cache_dir() -> Path:
    """Where built checkpoints live: ``$INTERLEAVE_CACHE_DIR`` or ``~/.cache/llava-interleave-serve``."""
    env = os.environ.get("INTERLEAVE_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "llava-interleave-serve"


def ensure_tiny_checkpoint(cache_dir: Path | None = None, seed: int = 0, layout: str = "hf") -> Path:
    """Build the tiny checkpoint once into the cache and return its directory.

    Safe under concurrent callers (a file lock; the checkpoint is written to a temporary folder and
    renamed into place). Logs a warning that the weights are random.

    Returns:
        ``<cache_dir>/tiny-seed<seed>`` (``layout="hf"``) or ``<cache_dir>/tiny-lmms-lab-seed<seed>``.
    """
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    target = cache_dir / (f"tiny-seed{seed}" if layout == "hf" else f"tiny-{layout}-seed{seed}")
    if not (target / "config.json").exists():
        cache_dir.mkdir(parents=True, exist_ok=True)
        with open(cache_dir / ".build.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (target / "config.json").exists():
                logger.warning("building the tiny random-weight checkpoint into %s", target)
                tmp = Path(tempfile.mkdtemp(dir=cache_dir, prefix=".tiny-"))
                write_checkpoint(tmp, "tiny", seed, layout=layout)
                shutil.rmtree(target, ignore_errors=True)
                tmp.rename(target)
    logger.warning(
        "model %s is the built-in tiny checkpoint: its weights are RANDOM and its answers meaningless",
        target,
    )
    return target


def main(argv: list[str] | None = None) -> None:
    """Command line entry: ``python -m model_adapter.checkpoint --size tiny --out DIR``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the weights")
    parser.add_argument(
        "--layout",
        choices=LAYOUT_CHOICES,
        default="hf",
        help="hf: the llava-hf conversion (default); lmms-lab: the authors' LlavaQwenForCausalLM layout",
    )
    args = parser.parse_args(argv)
    path = write_checkpoint(args.out, args.size, args.seed, layout=args.layout)
    print(f"wrote {args.size} {args.layout} checkpoint (random weights, seed {args.seed}) to {path}")


if __name__ == "__main__":
    main()
