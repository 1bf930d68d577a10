"""``interleave-serve --model <lmms-lab folder>`` through the official ``openai`` client.

One server on the tiny checkpoint in the lmms-lab layout (``LlavaQwenForCausalLM``, no ``<image>``
token, no chat template, no processor files): the mixed request (text, two images, a video, a 3-view
scene) gets the prompt token count of the same request on the HF layout, as the server's own prompt
builder computes it there, and the documented rendering (text tokens + 729 per image / frame / view).
"""

from __future__ import annotations

from pathlib import Path

import openai
import pytest

from harness import media
from harness.servers import (
    TINY_ENGINE_FLAGS,
    clean_environment,
    free_port,
    interleave_serve_command,
    start_server,
)

from .conftest import REPO

NUM_FRAMES = 4
SYSTEM = "You are a helpful assistant."
TOKENS_PER_IMAGE = 729


@pytest.fixture(scope="module")
def lmms_checkpoint() -> Path:
    from model_adapter.checkpoint import ensure_tiny_checkpoint

    return ensure_tiny_checkpoint(REPO / ".cache" / "checkpoints", layout="lmms-lab")


@pytest.fixture(scope="module")
def lmms_server(lmms_checkpoint, tmp_path_factory):
    assert not (lmms_checkpoint / "chat_template.json").exists()
    port = free_port()
    cmd = interleave_serve_command(
        port, *TINY_ENGINE_FLAGS, "--max-model-len", "8192", "--model", str(lmms_checkpoint)
    )
    server = start_server(
        cmd,
        ready_url=f"http://127.0.0.1:{port}/ready",
        log_path=tmp_path_factory.mktemp("lmms-serve") / "server.log",
        env=clean_environment(),
    )
    yield server
    server.stop()


def _mixed_parts() -> list[dict]:
    return media.mixed_parts(NUM_FRAMES)


def test_mixed_request_has_the_hf_layout_prompt_token_count(lmms_server, lmms_checkpoint, tiny_checkpoint):
    from transformers import AutoTokenizer

    from server.prompt import PromptBuilder
    from server.schemas import ChatCompletionRequest

    parts = _mixed_parts()
    client = openai.OpenAI(base_url=lmms_server.v1, api_key="unused", max_retries=0, timeout=300)
    model = client.models.list().data[0].id
    assert model == lmms_checkpoint.name
    out = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": parts}], max_tokens=8, temperature=0
    )
    assert out.choices[0].finish_reason == "length" and out.usage.completion_tokens == 8

    # the HF layout: the server's prompt builder on the HF-layout checkpoint of the same weights
    request = ChatCompletionRequest.model_validate({"messages": [{"role": "user", "content": parts}]})
    hf_builder = PromptBuilder.from_pretrained(tiny_checkpoint, default_system_prompt=SYSTEM)
    hf_prompt = hf_builder.build(request, [1, 1, NUM_FRAMES, 3])
    assert out.usage.prompt_tokens == hf_prompt.prompt_tokens

    # and the documented rendering, tokenized by the HF layout's tokenizer
    rendered = (
        f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n"
        "Compare these.<image>\n<image>\n" + "<image>" * NUM_FRAMES + "\n"
        "front: <image>\nleft: <image>\nback: <image>\n<|im_end|>\n<|im_start|>assistant\n"
    )
    ids = AutoTokenizer.from_pretrained(str(tiny_checkpoint))(rendered, add_special_tokens=False)["input_ids"]
    images = 2 + NUM_FRAMES + 3
    assert ids.count(151646) == images
    assert out.usage.prompt_tokens == len(ids) - images + TOKENS_PER_IMAGE * images


def test_streaming_works_on_the_lmms_lab_layout(lmms_server):
    client = openai.OpenAI(base_url=lmms_server.v1, api_key="unused", max_retries=0, timeout=300)
    model = client.models.list().data[0].id
    content = [
        {"type": "image_url", "image_url": {"url": media.png_url(40, 30, (10, 200, 10))}},
        {"type": "text", "text": "What colour is it?"},
    ]
    chunks = list(
        client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": content}],
            max_tokens=6,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens == 6
    assert usage.prompt_tokens > TOKENS_PER_IMAGE
    assert any(c.choices and c.choices[0].finish_reason == "length" for c in chunks)
