"""The lmms-lab (``llava_qwen``) layout without an engine: config translation, key mapping, the
checkpoint builder's second layout and the server's prompt builder on it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from model_adapter import checkpoint, geometry, lmms_lab
from model_adapter.weights import (
    MissingWeightsError,
    canonical_key,
    check_complete,
    is_unused_tensor,
    to_lmms_lab,
)

# The published lmms-lab/llava-next-interleave-qwen-0.5b config.json (the fields that matter).
PUBLISHED_0_5B = {
    "architectures": ["LlavaQwenForCausalLM"],
    "model_type": "llava_qwen",
    "bos_token_id": 151643,
    "eos_token_id": 151645,
    "hidden_act": "silu",
    "hidden_size": 1024,
    "intermediate_size": 2816,
    "max_position_embeddings": 32768,
    "max_window_layers": 21,
    "num_attention_heads": 16,
    "num_hidden_layers": 24,
    "num_key_value_heads": 16,
    "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0,
    "sliding_window": 4096,
    "tie_word_embeddings": True,
    "torch_dtype": "bfloat16",
    "use_sliding_window": False,
    "vocab_size": 152000,
    "image_aspect_ratio": "anyres",
    "mm_hidden_size": 1152,
    "mm_patch_merge_type": "spatial_unpad",
    "mm_projector_type": "mlp2x_gelu",
    "mm_use_im_patch_token": False,
    "mm_use_im_start_end": False,
    "mm_vision_select_feature": "patch",
    "mm_vision_select_layer": -2,
    "mm_vision_tower": "google/siglip-so400m-patch14-384",
}


def test_published_config_translates_to_the_llava_hf_conversion():
    out = lmms_lab.translate_config(PUBLISHED_0_5B)
    hf = checkpoint.build_config("0.5b")
    for key in (
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "vocab_size",
        "rms_norm_eps",
        "rope_theta",
        "tie_word_embeddings",
    ):
        assert out["text_config"][key] == hf["text_config"][key], key
    for key in (
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "image_size",
        "patch_size",
        "hidden_act",
        "layer_norm_eps",
    ):
        assert out["vision_config"][key] == hf["vision_config"][key], key
    assert out["vision_config"]["num_hidden_layers"] == 26 and out["vision_tower_num_layers"] == 27
    assert (out["vision_feature_layer"], out["vision_feature_select_strategy"]) == (-1, "full")
    assert out["projector_hidden_act"] == "gelu" and out["multimodal_projector_bias"] is True
    assert out["image_token_index"] == 151999  # the last of 152000 embedding rows
    assert geometry.num_image_tokens(out["vision_config"]) == out["image_seq_length"] == 729
    assert "hidden_size" not in out and out["mm_vision_tower"] == PUBLISHED_0_5B["mm_vision_tower"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"mm_vision_tower": "openai/clip-vit-large-patch14-336"},
            "unknown vision tower 'openai/clip-vit-large-patch14-336'",
        ),
        ({"mm_vision_select_layer": -1}, "mm_vision_select_layer -1"),
        ({"mm_projector_type": "linear"}, "mm_projector_type 'linear'"),
        ({"mm_hidden_size": 1024}, "mm_hidden_size 1024"),
        ({"mm_use_im_start_end": True}, "mm_use_im_start_end"),
    ],
)
def test_unsupported_lmms_lab_configs_fail_clearly(change, message):
    with pytest.raises(ValueError, match=message):
        lmms_lab.translate_config({**PUBLISHED_0_5B, **change})


def test_unknown_tower_error_lists_the_known_ones():
    with pytest.raises(ValueError, match="never fetched from a model hub") as info:
        geometry.vision_tower_config("org/other-tower")
    assert geometry.SIGLIP_SO400M_PATCH14_384 in str(info.value)


def test_autoconfig_reads_an_lmms_lab_folder_as_a_llava_config(tmp_path):
    from transformers import AutoConfig, LlavaConfig

    from model_adapter.config import LlavaQwenConfig, register_config

    register_config()
    register_config()  # idempotent
    (tmp_path / "config.json").write_text(json.dumps(PUBLISHED_0_5B))
    config = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(config, LlavaQwenConfig) and isinstance(config, LlavaConfig)
    assert config.model_type == "llava_qwen" and config.architectures == ["LlavaQwenForCausalLM"]
    assert config.text_config.model_type == "qwen2" and config.text_config.hidden_size == 1024
    assert config.get_text_config().vocab_size == 152000
    assert config.vision_config.model_type == "siglip_vision_model"
    assert config.vision_config.num_hidden_layers == 26 and config.vision_tower_num_layers == 27
    assert config.image_token_index == 151999 and config.dtype == torch.bfloat16
    # survives serialisation (vLLM sends configs to its engine processes)
    again = LlavaQwenConfig.from_dict(config.to_dict())
    assert again.to_dict() == config.to_dict()


LMMS_KEYS = {
    "model.vision_tower.vision_tower.vision_model.embeddings.patch_embedding.weight": "vision_tower.vision_model.embeddings.patch_embedding.weight",
    "model.vision_tower.vision_tower.vision_model.encoder.layers.25.self_attn.q_proj.weight": "vision_tower.vision_model.encoder.layers.25.self_attn.q_proj.weight",
    "model.vision_tower.vision_tower.vision_model.post_layernorm.bias": "vision_tower.vision_model.post_layernorm.bias",
    "model.mm_projector.0.weight": "multi_modal_projector.linear_1.weight",
    "model.mm_projector.2.bias": "multi_modal_projector.linear_2.bias",
    "model.embed_tokens.weight": "language_model.model.embed_tokens.weight",
    "model.layers.23.mlp.gate_proj.weight": "language_model.model.layers.23.mlp.gate_proj.weight",
    "model.norm.weight": "language_model.model.norm.weight",
    "lm_head.weight": "language_model.lm_head.weight",
}


@pytest.mark.parametrize("key", list(LMMS_KEYS))
def test_lmms_lab_keys_map_to_the_adapter_names_and_back(key):
    assert canonical_key(key) == LMMS_KEYS[key]
    assert to_lmms_lab(LMMS_KEYS[key]) == key


def test_only_the_27th_siglip_layer_and_image_newline_are_skipped():
    layer = "model.vision_tower.vision_tower.vision_model.encoder.layers.{}.mlp.fc1.weight"
    lmms = {"vision_layers": 26, "stored_vision_layers": 27}
    assert is_unused_tensor(layer.format(26), **lmms)
    assert is_unused_tensor("model.image_newline", **lmms)
    assert not is_unused_tensor(layer.format(25), **lmms)
    assert not is_unused_tensor(layer.format(27), **lmms)  # past the tower: unexpected, loader raises
    hf = {"vision_layers": 26, "stored_vision_layers": 26}
    assert not is_unused_tensor("vision_tower.vision_model.encoder.layers.26.mlp.fc1.weight", **hf)
    assert not is_unused_tensor("model.image_newline", **hf)


def test_missing_tensor_is_named_in_the_checkpoints_own_layout():
    with pytest.raises(
        MissingWeightsError, match=r"missing tensor 'model\.layers\.1\.mlp\.down_proj\.weight'"
    ):
        check_complete(set(), ["language_model.model.layers.1.mlp.down_proj.weight"], to_lmms_lab)


@pytest.fixture(scope="module")
def both_layouts(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("layouts")
    hf = checkpoint.write_checkpoint(root / "hf", "tiny", seed=3)
    lmms = checkpoint.write_checkpoint(root / "lmms", "tiny", seed=3, layout="lmms-lab")
    return hf, lmms


def test_builder_writes_the_same_weights_in_the_lmms_lab_layout(both_layouts):
    hf_dir, lmms_dir = both_layouts
    hf, lmms = load_file(str(hf_dir / "model.safetensors")), load_file(str(lmms_dir / "model.safetensors"))
    renamed = {canonical_key(k): v for k, v in lmms.items()}
    extra = set(renamed) - set(hf)
    assert extra == {"model.image_newline"} | {
        k for k in renamed if k.startswith("vision_tower.vision_model.encoder.layers.2.")
    }
    assert len(extra) == 17  # image_newline + the 16 tensors of one SigLIP layer
    for name, tensor in hf.items():
        assert torch.equal(renamed[name], tensor), name
    assert all(k.startswith(("model.", "lm_head.")) for k in lmms)
    assert not (lmms_dir / "chat_template.json").exists()
    assert not (lmms_dir / "preprocessor_config.json").exists()
    config = json.loads((lmms_dir / "config.json").read_text())
    assert (
        config["model_type"] == "llava_qwen" and config["mm_vision_tower"] == geometry.TINY_SIGLIP_PATCH14_384
    )
    translated = lmms_lab.translate_config(config)
    hf_config = json.loads((hf_dir / "config.json").read_text())
    for key, value in hf_config["vision_config"].items():
        assert translated["vision_config"][key] == value, key


def test_lmms_lab_tokenizer_has_no_image_token_and_encodes_text_alike(both_layouts):
    from transformers import AutoTokenizer

    from model_adapter.config import register_config

    register_config()
    hf = AutoTokenizer.from_pretrained(both_layouts[0])
    lmms = AutoTokenizer.from_pretrained(both_layouts[1])
    assert "<image>" not in lmms.get_vocab() and max(lmms.get_vocab().values()) == checkpoint.IM_END_ID
    assert lmms.chat_template is None
    text = "<|im_start|>user\nCompare these two pictures: 384 cats.<|im_end|>\n<|im_start|>assistant\n"
    assert lmms.encode(text) == hf.encode(text)


def test_prompt_builder_on_both_layouts(both_layouts):
    from server.prompt import PromptBuilder
    from server.schemas import ChatCompletionRequest

    hf = PromptBuilder.from_pretrained(both_layouts[0], default_system_prompt="You are a helpful assistant.")
    lmms = PromptBuilder.from_pretrained(
        both_layouts[1], default_system_prompt="You are a helpful assistant."
    )
    assert (hf.image_token_id, lmms.image_token_id) == (151646, 151999)
    assert lmms.tokens_per_image == hf.tokens_per_image == 729
    url = "data:image/png;base64,AAAA"
    request = ChatCompletionRequest.model_validate(
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "Compare <image> (typed) with"},
                        {"type": "image_url", "image_url": {"url": url}},
                        {
                            "type": "video_url",
                            "video_url": {"url": "data:video/mp4;base64,AAAA", "num_frames": 3},
                        },
                        {
                            "type": "scene_views",
                            "scene_views": {"urls": [url, url], "labels": ["front", "back"]},
                        },
                    ],
                }
            ]
        }
    )
    a, b = hf.build(request, [1, 3, 2]), lmms.build(request, [1, 3, 2])
    assert a.prompt_tokens == b.prompt_tokens and b.num_images == 6
    assert [151646 if t == 151999 else t for t in b.prompt_token_ids] == a.prompt_token_ids


@pytest.mark.parametrize("size", ["0.5b", "7b"])
def test_real_size_lmms_lab_names_round_trip(size):
    """Every tensor of the real sizes has an lmms-lab name that maps back (meta device, no memory)."""
    shapes = checkpoint.parameter_shapes(checkpoint.build_config(size))
    assert all(canonical_key(to_lmms_lab(k)) == k for k in shapes)
    config = checkpoint.build_lmms_lab_config(size)
    assert config["mm_vision_tower"] == geometry.SIGLIP_SO400M_PATCH14_384
    translated = lmms_lab.translate_config(config)
    hf = checkpoint.build_config(size)
    assert translated["vision_config"]["num_hidden_layers"] == hf["vision_config"]["num_hidden_layers"] == 26
    for key, value in hf["text_config"].items():
        assert translated["text_config"][key] == value, key
