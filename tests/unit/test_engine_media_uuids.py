"""VLLMEngine.generate hands the media keys to vLLM as the prompt's multi_modal_uuids (no engine:
a recording stand-in for AsyncLLM)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

from PIL import Image

from server.engine import VLLMEngine
from server.generation import SamplingOptions


class RecordingLLM:
    """Records the prompts given to generate and answers with one finished output."""

    def __init__(self) -> None:
        self.prompts: list[dict] = []

    async def generate(self, prompt, params, request_id, **kwargs):
        self.prompts.append(dict(prompt))
        choice = SimpleNamespace(index=0, text="ok", token_ids=[1], finish_reason="stop", logprobs=None)
        yield SimpleNamespace(
            prompt_token_ids=list(prompt["prompt_token_ids"]), outputs=[choice], finished=True
        )


def run(media_uuids):
    llm = RecordingLLM()
    engine = VLLMEngine(llm=llm, model_path=Path("/x"), served_model_name="m", max_model_len=100)
    images = [Image.new("RGB", (4, 4)), Image.new("RGB", (4, 4), (9, 9, 9))]

    async def go():
        return [
            s
            async for s in engine.generate(
                "r1", [1, 7, 7, 2], images, SamplingOptions(max_tokens=1), media_uuids=media_uuids
            )
        ]

    steps = asyncio.run(go())
    assert steps[-1].finished
    return llm.prompts[0]


def test_media_keys_become_multi_modal_uuids():
    prompt = run(["image:abc:size=384", "video:def:num_frames=16#0"])
    assert prompt["multi_modal_uuids"] == {"image": ["image:abc:size=384", "video:def:num_frames=16#0"]}
    assert len(prompt["multi_modal_data"]["image"]) == 2


def test_without_keys_vllm_hashes_the_pixels_itself():
    assert "multi_modal_uuids" not in run(None)
