"""Greedy output through the HTTP API == transformers' ``LlavaForConditionalGeneration`` (float32) on the
same tiny checkpoint, same prompt token ids and pixel values; and ``image_placement: front`` == the
checkpoint's own chat template."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from harness import media
from server.prompt import PromptBuilder
from server.schemas import parse_chat_request

IMAGE_TOKEN_ID = 151646
TOKENS_PER_IMAGE = 729
SYSTEM = "You are a helpful assistant."
MAX_TOKENS = 8


@pytest.fixture(scope="module")
def hf(live_server):
    from transformers import AutoTokenizer, LlavaForConditionalGeneration
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    path = str(live_server.checkpoint)
    model = LlavaForConditionalGeneration.from_pretrained(path, dtype=torch.float32).eval()
    return model, SiglipImageProcessorPil.from_pretrained(path), AutoTokenizer.from_pretrained(path)


def hf_greedy(hf, prompt: str, images: list[Image.Image]) -> tuple[str, int]:
    """Greedy continuation of ``prompt`` (each ``<image>`` expanded to 729 tokens), and the prompt length."""
    model, processor, tok = hf
    ids = tok(prompt, add_special_tokens=False)["input_ids"]
    assert ids.count(IMAGE_TOKEN_ID) == len(images)
    expanded = [t for i in ids for t in ([i] * TOKENS_PER_IMAGE if i == IMAGE_TOKEN_ID else [i])]
    x = torch.tensor([expanded])
    kwargs = {}
    if images:
        kwargs["pixel_values"] = processor(images=images, return_tensors="pt")["pixel_values"].to(
            torch.float32
        )
    with torch.no_grad():
        out = model.generate(
            input_ids=x,
            attention_mask=torch.ones_like(x),
            max_new_tokens=MAX_TOKENS,
            do_sample=False,
            eos_token_id=151645,
            pad_token_id=151643,
            **kwargs,
        )
    new = out[0, len(expanded) :].tolist()
    if 151645 in new:
        new = new[: new.index(151645)]
    return tok.decode(new, skip_special_tokens=True), len(expanded)


def decode(raw: bytes) -> Image.Image:
    import io

    return Image.open(io.BytesIO(raw)).convert("RGB")


def test_greedy_matches_transformers_interleaved(client, hf):
    red, blue = media.png(32, 24, (220, 20, 20)), media.png(24, 32, (20, 20, 220))
    v1, v2 = media.png(16, 16, (0, 200, 0)), media.png(20, 12, (200, 200, 0))
    content = [
        {"type": "text", "text": "First"},
        {"type": "image_url", "image_url": {"url": media.data_url(red)}},
        {"type": "text", "text": "then"},
        {"type": "image_url", "image_url": {"url": media.data_url(blue)}},
        {
            "type": "scene_views",
            "scene_views": {"urls": [media.data_url(v1), media.data_url(v2)], "labels": ["cam0", "cam1"]},
        },
        {"type": "text", "text": "What differs?"},
    ]
    r = client.post(
        "/v1/chat/completions",
        json={"messages": [{"role": "user", "content": content}], "max_tokens": MAX_TOKENS, "temperature": 0},
    )
    assert r.status_code == 200, r.text
    prompt = (
        f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n"
        "First<image>\nthen<image>\ncam0: <image>\ncam1: <image>\nWhat differs?<|im_end|>\n<|im_start|>assistant\n"
    )
    expected, prompt_len = hf_greedy(hf, prompt, [decode(b) for b in (red, blue, v1, v2)])
    data = r.json()
    assert data["usage"]["prompt_tokens"] == prompt_len
    assert data["choices"][0]["message"]["content"] == expected


def test_front_placement_matches_chat_template(client, hf, live_server):
    model, processor, tok = hf
    template = json.loads((live_server.checkpoint / "chat_template.json").read_text())["chat_template"]
    red, blue = media.png(32, 24, (220, 20, 20)), media.png(24, 32, (20, 20, 220))
    hf_messages = [
        {"role": "system", "content": [{"type": "text", "text": SYSTEM}]},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Compare "},
                {"type": "image"},
                {"type": "text", "text": "with"},
                {"type": "image"},
            ],
        },
    ]
    rendered = tok.apply_chat_template(
        hf_messages, chat_template=template, tokenize=False, add_generation_prompt=True
    )
    ours = [
        {"role": "system", "content": SYSTEM},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Compare "},
                {"type": "image_url", "image_url": {"url": media.data_url(red)}},
                {"type": "text", "text": "with"},
                {"type": "image_url", "image_url": {"url": media.data_url(blue)}},
            ],
        },
    ]
    # exact token ids, without the engine
    builder = PromptBuilder.from_pretrained(live_server.checkpoint, default_system_prompt=SYSTEM)
    built = builder.build(parse_chat_request({"messages": ours, "image_placement": "front"}), [1, 1])
    assert built.prompt_token_ids == tok(rendered, add_special_tokens=False)["input_ids"]
    # and through the engine
    r = client.post(
        "/v1/chat/completions",
        json={"messages": ours, "image_placement": "front", "max_tokens": MAX_TOKENS, "temperature": 0},
    )
    assert r.status_code == 200, r.text
    expected, prompt_len = hf_greedy(hf, rendered, [decode(red), decode(blue)])
    assert r.json()["usage"]["prompt_tokens"] == prompt_len
    assert r.json()["choices"][0]["message"]["content"] == expected
