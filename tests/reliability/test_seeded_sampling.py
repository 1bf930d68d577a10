"""Seeded sampling with prompts longer than one prefill chunk (2048 tokens on the CPU build) used to
kill vLLM's engine on CPU; now it runs, the same seed gives the same tokens, and a matrix of sampling
options x prompt lengths x media leaves the engine alive."""

from __future__ import annotations

import asyncio
import itertools

import httpx
import pytest

from harness.load import mixed_content, run_load, send_chat

LONG_TEXT = "The quick brown fox jumps over the lazy dog. " * 260  # ~2,600 text tokens: > one chunk


def long_seeded_content() -> list[dict]:
    """Text + 3 images + a 4-frame video: 7 x 729 visual tokens, far past one prefill chunk."""
    return [
        *mixed_content("images", 1),
        *mixed_content("image", 2),
        *mixed_content("video", 3, num_frames=4),
        {"type": "text", "text": "Compare them."},
    ]


def _ok_health(server) -> None:
    r = httpx.get(server.base_url + "/health", timeout=5)
    assert r.status_code == 200, (r.status_code, r.text)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_seeded_long_prompt_runs_and_repeats(reliability_server, stream):
    body = {
        "messages": [{"role": "user", "content": long_seeded_content()}],
        "max_tokens": 12,
        "temperature": 1.0,
        "seed": 1234,
        "stream": stream,
    }
    first, second = asyncio.run(run_load(reliability_server.base_url, [body, body], concurrency=1))
    assert first.ok, first.error
    assert second.ok, second.error
    assert first.text == second.text  # the second one's prompt came mostly from the prefix cache
    _ok_health(reliability_server)


def test_seeded_long_text_prompt(reliability_server):
    body = {
        "messages": [{"role": "user", "content": LONG_TEXT}],
        "max_tokens": 8,
        "temperature": 0.9,
        "seed": 7,
    }
    outs = asyncio.run(run_load(reliability_server.base_url, [body] * 2, concurrency=2))
    assert all(o.ok for o in outs), [o.error for o in outs]
    assert outs[0].text == outs[1].text  # concurrent: chunked differently, same tokens
    _ok_health(reliability_server)


SAMPLING = [
    {"temperature": 0},
    {"temperature": 1.0, "seed": 11},
    {"temperature": 0.7, "top_p": 0.8, "seed": 3},
    {"temperature": 1.2, "n": 2, "seed": 5},
    {"temperature": 0.8, "presence_penalty": 1.5, "frequency_penalty": -1.0, "seed": 9},
    {"temperature": 0.5, "logprobs": True, "top_logprobs": 3, "seed": 2},
    {"temperature": 1.0, "stop": ["a", "e"], "seed": 4},
    {"temperature": 1.0, "top_k": 5, "min_p": 0.05, "repetition_penalty": 1.3, "seed": 8},
    {"temperature": 1.0, "min_tokens": 4, "seed": 6, "max_tokens": 6},
]
PROMPTS = {
    "short": lambda k: mixed_content("text", k),
    "long_text": lambda k: [{"type": "text", "text": LONG_TEXT}],
    "image": lambda k: mixed_content("image", k),
    "video": lambda k: mixed_content("video", k, num_frames=4),
    "scene": lambda k: mixed_content("scene", k),
}


def test_sampling_matrix_never_kills_the_engine(reliability_server):
    """Every sampling option set x prompt (short, long, image, video, scene), streaming and not: 200
    (or a 400 naming an unsupported field), never a 5xx, and the engine stays alive."""
    bodies = []
    for k, (options, (_name, make)) in enumerate(itertools.product(SAMPLING, PROMPTS.items())):
        body = {"messages": [{"role": "user", "content": make(k)}], "max_tokens": 4, "stream": k % 2 == 0}
        body.update(options)
        bodies.append(body)
    outs = asyncio.run(run_load(reliability_server.base_url, bodies, concurrency=4))
    server_errors = [(o.index, o.status, o.error) for o in outs if o.status >= 500 or o.status == 0]
    assert not server_errors
    bad_400 = [(o.index, o.error) for o in outs if o.status == 400 and "param" not in str(o.error)]
    assert not bad_400
    assert sum(o.ok for o in outs) >= len(SAMPLING) * len(PROMPTS) // 2
    _ok_health(reliability_server)
    # ... and it still serves a seeded long request afterwards
    body = {"messages": [{"role": "user", "content": long_seeded_content()}], "max_tokens": 4, "seed": 1}
    out = asyncio.run(_one(reliability_server.base_url, body))
    assert out.ok, out.error


async def _one(base_url: str, body: dict):
    async with httpx.AsyncClient(timeout=120) as client:
        return await send_chat(client, base_url + "/v1/chat/completions", body)
