"""vLLM with the adapter (float32) against transformers' LlavaForConditionalGeneration.

Same tiny checkpoint, greedy decoding: identical token ids for 16 new tokens and top-5 logprobs within
1e-3 at every step, and identical prompt token ids after placeholder expansion.
"""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from harness.media import gradient_image, video_frames

MAX_NEW_TOKENS = 16
TOP_LOGPROBS = 5
SYSTEM = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"


def _chat(*turns: str) -> str:
    """ChatML prompt from alternating user / assistant contents, ending with the assistant cue."""
    out = SYSTEM
    for i, content in enumerate(turns):
        role = "user" if i % 2 == 0 else "assistant"
        out += f"<|im_start|>{role}\n{content}<|im_end|>\n"
    return out + "<|im_start|>assistant\n"


FRAMES = video_frames(4)
IMAGES = [gradient_image(200, 300, 1), gradient_image(640, 360, 2), gradient_image(50, 50, 3, "L")]

CASES = {
    "text_only": (_chat("Tell me about the weather in two words."), {}, None),
    "one_image": (_chat("<image>\nWhat is in the picture?"), {"image": IMAGES[:1]}, None),
    "three_images_interleaved": (
        _chat("Compare <image>\n with <image>\n and with <image>\n: which is brighter?"),
        {"image": IMAGES},
        None,
    ),
    "video_4_frames": (
        _chat("<video>\nWhat happens in the video?"),
        {"video": [FRAMES]},
        # the reference gets the same 4 frames as 4 consecutive images
        (
            _chat("<image><image><image><image>\nWhat happens in the video?"),
            [Image.fromarray(f) for f in FRAMES],
        ),
    ),
    "two_images_two_turns": (
        _chat("<image>\nDescribe this.", "A gradient.", "<image>\nAnd this one?"),
        {"image": IMAGES[:2]},
        None,
    ),
}


def _reference(hf_reference, prompt: str, images):
    model, processor = hf_reference
    inputs = processor(text=prompt, images=images or None, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(
            **inputs,
            max_new_tokens=MAX_NEW_TOKENS,
            do_sample=False,
            output_logits=True,
            return_dict_in_generate=True,
            eos_token_id=None,
            pad_token_id=151643,
        )
    prompt_ids = inputs["input_ids"][0].tolist()
    new_ids = out.sequences[0, len(prompt_ids) :].tolist()
    logprobs = [torch.log_softmax(step[0].float(), dim=-1) for step in out.logits]
    return prompt_ids, new_ids, logprobs


@pytest.mark.parametrize("case", list(CASES))
def test_greedy_tokens_and_logprobs_match_transformers(case, llm, hf_reference):
    from vllm import SamplingParams

    prompt, mm_data, reference_input = CASES[case]
    params = SamplingParams(
        max_tokens=MAX_NEW_TOKENS, temperature=0.0, logprobs=TOP_LOGPROBS, ignore_eos=True
    )
    request = {"prompt": prompt}
    if mm_data:
        request["multi_modal_data"] = mm_data
    (result,) = llm.generate([request], params, use_tqdm=False)

    if reference_input is None:
        reference_input = (prompt, mm_data.get("image"))
    ref_prompt_ids, ref_ids, ref_logprobs = _reference(hf_reference, *reference_input)

    assert result.prompt_token_ids == ref_prompt_ids
    completion = result.outputs[0]
    assert list(completion.token_ids) == ref_ids
    assert len(set(ref_ids)) > MAX_NEW_TOKENS // 2, "random weights must not collapse to one token"
    for step, (ours, ref) in enumerate(zip(completion.logprobs, ref_logprobs, strict=True)):
        ref_top = torch.topk(ref, TOP_LOGPROBS)
        for token_id, value in zip(ref_top.indices.tolist(), ref_top.values.tolist(), strict=True):
            assert token_id in ours, f"step {step}: reference top-5 token {token_id} missing"
            assert abs(ours[token_id].logprob - value) <= 1e-3, (step, token_id)
