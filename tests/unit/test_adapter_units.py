"""Model-adapter pieces that need no vLLM: token geometry, key layouts, checkpoint builder, template."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import jinja2
import pytest

import model_adapter
from model_adapter import checkpoint, geometry
from model_adapter.weights import (
    LAYOUTS,
    MissingWeightsError,
    canonical_key,
    check_complete,
    expected_checkpoint_keys,
    to_layout,
)

PUBLISHED_KEYS = [
    "vision_tower.vision_model.embeddings.patch_embedding.weight",
    "vision_tower.vision_model.encoder.layers.0.self_attn.q_proj.weight",
    "vision_tower.vision_model.post_layernorm.bias",
    "multi_modal_projector.linear_1.weight",
    "multi_modal_projector.linear_2.bias",
    "language_model.model.embed_tokens.weight",
    "language_model.model.layers.3.mlp.gate_proj.weight",
    "language_model.model.norm.weight",
    "language_model.lm_head.weight",
]


def test_729_tokens_per_image_from_the_vision_config():
    config = checkpoint.build_config("7b")
    assert geometry.num_image_tokens(config["vision_config"]) == 729
    assert geometry.num_video_tokens(config["vision_config"], 16) == 11_664
    # image_seq_length is not a source of truth
    assert geometry.num_image_tokens({"image_size": 224, "patch_size": 14}) == 256
    with pytest.raises(ValueError):
        geometry.num_video_tokens(config["vision_config"], 0)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_layout_maps_back_to_the_published_keys(layout):
    for key in PUBLISHED_KEYS:
        assert canonical_key(to_layout(key, layout)) == key


def test_layouts_differ_as_seen_in_the_wild():
    key = "vision_tower.vision_model.embeddings.patch_embedding.weight"
    assert to_layout(key, "hf452") == "model.vision_tower.vision_model.embeddings.patch_embedding.weight"
    assert to_layout(key, "hf5") == "model.vision_tower.embeddings.patch_embedding.weight"
    assert to_layout("language_model.lm_head.weight", "hf5") == "lm_head.weight"


def test_missing_weight_error_names_the_first_gap():
    params = [
        "language_model.model.layers.0.self_attn.qkv_proj.weight",
        "language_model.model.layers.0.mlp.gate_up_proj.weight",
    ]
    expected = expected_checkpoint_keys(params)
    assert "language_model.model.layers.0.self_attn.k_proj.weight" in expected
    check_complete(expected, params)
    with pytest.raises(
        MissingWeightsError, match=r"'language_model.model.layers.0.mlp.up_proj.weight' \(and 1 more\)"
    ):
        check_complete(
            expected
            - {
                "language_model.model.layers.0.mlp.up_proj.weight",
                "language_model.model.layers.0.self_attn.v_proj.weight",
            },
            params,
        )


def test_config_has_the_published_fields():
    config = checkpoint.build_config("0.5b")
    assert config["image_token_index"] == 151646
    assert config["vision_feature_layer"] == -1
    assert config["vision_feature_select_strategy"] == "full"
    assert config["text_config"]["vocab_size"] == 152000
    assert config["text_config"]["eos_token_id"] == 151645
    assert config["text_config"]["hidden_size"] // config["text_config"]["num_attention_heads"] == 64
    tiny = checkpoint.build_config("tiny")["text_config"]
    assert tiny["hidden_size"] // tiny["num_attention_heads"] == 64  # vLLM CPU attention head size


def _digest(directory: Path) -> dict[str, str]:
    return {
        f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(directory.iterdir()) if f.is_file()
    }


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return checkpoint.write_checkpoint(tmp_path_factory.mktemp("tiny"), "tiny", seed=0)


def test_builder_is_deterministic(built, tmp_path):
    again = checkpoint.write_checkpoint(tmp_path / "again", "tiny", seed=0)
    assert _digest(built) == _digest(again)


def test_tokenizer_has_the_real_special_ids(built):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(built)
    assert tok.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>"]) == [
        151643,
        151644,
        151645,
        151646,
    ]
    assert tok.eos_token_id == 151645
    assert len(tok) == 152000
    # every id the model can produce decodes to printable text
    assert tok.decode([5, 70_000, 151_999]).strip()
    # a typed placeholder is plain text when special tokens are split
    assert 151646 not in tok.encode("<image>", split_special_tokens=True)
    files = {f.name for f in built.iterdir()}
    assert {
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "preprocessor_config.json",
        "processor_config.json",
        "chat_template.json",
    } <= files
    assert json.loads((built / "processor_config.json").read_text())["patch_size"] == 14


def _render(template: str, messages) -> str:
    env = jinja2.Environment()
    return env.from_string(template).render(messages=messages, add_generation_prompt=True)


def test_shipped_template_renders_parts_in_place():
    template = Path(model_adapter.chat_template_path()).read_text()
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "A"},
                {"type": "image_url", "image_url": {"url": "x"}},
                {"type": "video"},
                {"type": "text", "text": "B"},
            ],
        }
    ]
    assert _render(template, messages) == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nA<image>\n<video>\nB<|im_end|>\n<|im_start|>assistant\n"
    )


def test_published_template_puts_images_first_and_drops_videos():
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "A"},
                {"type": "image"},
                {"type": "video"},
                {"type": "text", "text": "B"},
            ],
        }
    ]
    assert _render(checkpoint.HF_CHAT_TEMPLATE, messages) == (
        "<|im_start|>user\n<image>\nAB<|im_end|>\n<|im_start|>assistant\n"
    )
