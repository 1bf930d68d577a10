"""On a CUDA machine: the adapter at the real 0.5B size (random bf16 weights) serves a two-image
request and a video, with 729 tokens per image and frame. Skipped without a GPU."""

from __future__ import annotations

import pytest

from harness.media import gradient_image, video_frames

from .conftest import REPO, close_llm, make_llm

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def checkpoint_05b():
    from model_adapter.checkpoint import write_checkpoint

    out = REPO / ".cache" / "checkpoints" / "0.5b-seed0"
    if not (out / "config.json").exists():
        write_checkpoint(out, "0.5b", seed=0)
    return out


def test_real_05b_size_two_images_and_a_video_on_gpu(checkpoint_05b):
    from vllm import SamplingParams

    engine = make_llm(checkpoint_05b, dtype="bfloat16", enforce_eager=False, gpu_memory_utilization=0.5)
    try:
        prompt = (
            "<|im_start|>user\n<image>\n<image>\n<video>\nWhat differs?<|im_end|>\n<|im_start|>assistant\n"
        )
        data = {
            "image": [gradient_image(640, 480, 1), gradient_image(300, 500, 2)],
            "video": [video_frames(8)],
        }
        (out,) = engine.generate(
            [{"prompt": prompt, "multi_modal_data": data}],
            SamplingParams(max_tokens=8, temperature=0, ignore_eos=True),
            use_tqdm=False,
        )
        assert out.prompt_token_ids.count(151646) == 729 * (2 + 8)
        assert len(out.outputs[0].token_ids) == 8
    finally:
        close_llm(engine)
