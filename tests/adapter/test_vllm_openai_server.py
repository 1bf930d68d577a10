"""Stock vLLM OpenAI server + our plugin: image_url and video_url parts on the tiny checkpoint.

vLLM's own ``LlavaForConditionalGeneration`` is image-only; with the plugin installed (entry point
``vllm.general_plugins``), ``hf_overrides`` and our chat template, vLLM's server accepts videos too.
"""

from __future__ import annotations

import json
import sys

import pytest

import model_adapter
from harness.media import data_url, encode_video, gradient_image, png_bytes, video_frames, video_url
from harness.servers import free_port, start_server

NUM_FRAMES = 4


@pytest.fixture(scope="module")
def vllm_server(tiny_checkpoint, tmp_path_factory):
    """vLLM's own OpenAI server with our plugin (:func:`harness.servers.start_server`); its base URL."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("vllm-server") / "server.log"
    cmd = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(tiny_checkpoint),
        "--served-model-name", "tiny-interleave",
        "--hf-overrides", json.dumps(model_adapter.hf_overrides()),
        "--chat-template", model_adapter.chat_template_path(),
        "--dtype", "float32",
        "--max-model-len", "8192",
        "--enforce-eager",
        "--gpu-memory-utilization", "0.05",
        "--limit-mm-per-prompt", json.dumps({"image": 4, "video": 1}),
        "--media-io-kwargs", json.dumps({"video": {"num_frames": NUM_FRAMES}}),
        "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip
    try:
        server = start_server(
            cmd, ready_url=f"http://127.0.0.1:{port}/health", log_path=log_path, timeout=300
        )
    except RuntimeError as exc:
        pytest.fail(f"vLLM server did not start: {exc}")
    yield server.base_url
    server.stop(timeout=30)


def test_two_images_and_a_video_through_stock_server(vllm_server, tiny_checkpoint):
    from openai import OpenAI
    from transformers import AutoTokenizer

    client = OpenAI(base_url=vllm_server + "/v1", api_key="unused")
    content = [
        {"type": "text", "text": "Here is a photo:"},
        {"type": "image_url", "image_url": {"url": data_url(png_bytes(gradient_image(64, 48, 1)))}},
        {"type": "text", "text": "another one:"},
        {"type": "image_url", "image_url": {"url": data_url(png_bytes(gradient_image(30, 90, 2)))}},
        {"type": "text", "text": "and a clip:"},
        {
            "type": "video_url",
            "video_url": {"url": video_url(encode_video(16, 8, images=video_frames(16, 96, 64, seed=100)))},
        },
        {"type": "text", "text": "What do they have in common?"},
    ]
    response = client.chat.completions.create(
        model="tiny-interleave",
        messages=[{"role": "user", "content": content}],
        max_tokens=8,
        temperature=0,
    )
    assert response.choices[0].message.content
    assert response.usage.completion_tokens == 8

    # The same conversation with every visual part as one <image> token: the server must have
    # expanded each image and each of the NUM_FRAMES frames to 729 tokens.
    tokenizer = AutoTokenizer.from_pretrained(tiny_checkpoint)
    rendered = (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
        "Here is a photo:<image>\nanother one:<image>\nand a clip:"
        + "<image>" * NUM_FRAMES
        + "\nWhat do they have in common?<|im_end|>\n<|im_start|>assistant\n"
    )
    num_visual = 2 + NUM_FRAMES
    text_tokens = len(tokenizer.encode(rendered)) - num_visual
    assert response.usage.prompt_tokens == text_tokens + 729 * num_visual
