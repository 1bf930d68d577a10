"""The same random weights in the llava-hf layout and in the authors' lmms-lab layout
(``LlavaQwenForCausalLM``, ``model_type: llava_qwen``) give the same greedy tokens and logprobs.

Two engines: the package's shared one on the HF-layout tiny checkpoint, and one on the lmms-lab
layout of the same seed (module-scoped, closed after this module; loaded without ``hf_overrides``,
through the ``LlavaQwenForCausalLM`` name the plugin registers). Prompts are text with ``<image>`` /
``<video>`` placeholders (for lmms-lab, whose tokenizer has no ``<image>`` token, the processor turns
them into the image id), plus one token prompt built like the server builds it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from harness.media import gradient_image, video_frames

from .conftest import REPO, close_llm, make_llm

MAX_NEW_TOKENS = 16
TOP_LOGPROBS = 5
TOLERANCE = 1e-5
SYSTEM = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
HF_IMAGE_ID, LMMS_IMAGE_ID = 151646, 151999


def _chat(*turns: str) -> str:
    out = SYSTEM
    for i, content in enumerate(turns):
        role = "user" if i % 2 == 0 else "assistant"
        out += f"<|im_start|>{role}\n{content}<|im_end|>\n"
    return out + "<|im_start|>assistant\n"


IMAGES = [gradient_image(200, 300, 1), gradient_image(640, 360, 2), gradient_image(50, 50, 3, "L")]
FRAMES = video_frames(4)

CASES = {
    "text_only": (_chat("Tell me about the weather in two words."), {}),
    "one_image": (_chat("<image>\nWhat is in the picture?"), {"image": IMAGES[:1]}),
    "three_images_interleaved": (
        _chat("Compare <image>\n with <image>\n and with <image>\n: which is brighter?"),
        {"image": IMAGES},
    ),
    "video_4_frames": (_chat("<video>\nWhat happens in the video?"), {"video": [FRAMES]}),
    "two_turns": (
        _chat("<image>\nDescribe this.", "A gradient.", "<image>\nAnd this one?"),
        {"image": IMAGES[:2]},
    ),
}

MEASURED: list[float] = []
"""|logprob difference| of every compared top-5 entry (the report prints the largest)."""


@pytest.fixture(scope="module")
def lmms_checkpoint() -> Path:
    from model_adapter.checkpoint import ensure_tiny_checkpoint

    return ensure_tiny_checkpoint(REPO / ".cache" / "checkpoints", layout="lmms-lab")


@pytest.fixture(scope="module")
def lmms_llm(lmms_checkpoint):
    # No hf_overrides: the checkpoint's own architecture, LlavaQwenForCausalLM, is registered as a
    # name of the adapter (the shared HF-layout engine goes through hf_overrides).
    engine = make_llm(lmms_checkpoint, hf_overrides={})
    assert engine.llm_engine.model_config.architectures == ["LlavaQwenForCausalLM"]
    yield engine
    close_llm(engine)
    if MEASURED:
        print(
            f"\nlmms-lab vs HF layout: max |logprob difference| {max(MEASURED):.3g} over {len(MEASURED)} values"
        )


def _run(engine, request: dict):
    from vllm import SamplingParams

    params = SamplingParams(
        max_tokens=MAX_NEW_TOKENS, temperature=0.0, logprobs=TOP_LOGPROBS, ignore_eos=True
    )
    (out,) = engine.generate([request], params, use_tqdm=False)
    return out


def _assert_same_outputs(hf_out, lmms_out) -> None:
    hf, lmms = hf_out.outputs[0], lmms_out.outputs[0]
    assert list(lmms.token_ids) == list(hf.token_ids)
    assert len(set(hf.token_ids)) > MAX_NEW_TOKENS // 2, "random weights must not collapse to one token"
    for step, (ours, ref) in enumerate(zip(lmms.logprobs, hf.logprobs, strict=True)):
        ref_top = {t: lp for t, lp in ref.items() if lp.rank is not None and lp.rank <= TOP_LOGPROBS}
        for token_id, lp in ref_top.items():
            assert token_id in ours, f"step {step}: HF-layout top-5 token {token_id} missing"
            diff = abs(ours[token_id].logprob - lp.logprob)
            MEASURED.append(diff)
            assert diff <= TOLERANCE, (step, token_id, diff)


@pytest.mark.parametrize("case", list(CASES))
def test_lmms_lab_layout_matches_hf_layout(case, llm, lmms_llm):
    prompt, mm_data = CASES[case]
    request = {"prompt": prompt, **({"multi_modal_data": mm_data} if mm_data else {})}
    hf_out, lmms_out = _run(llm, request), _run(lmms_llm, request)
    # the same prompt, the image placeholder aside (the lmms-lab tokenizer has no <image> token)
    assert [
        HF_IMAGE_ID if t == LMMS_IMAGE_ID else t for t in lmms_out.prompt_token_ids
    ] == hf_out.prompt_token_ids
    assert lmms_out.prompt_token_ids.count(LMMS_IMAGE_ID) == hf_out.prompt_token_ids.count(HF_IMAGE_ID)
    assert hf_out.prompt_token_ids.count(HF_IMAGE_ID) == 729 * (
        len(mm_data.get("image", [])) + 4 * len(mm_data.get("video", []))
    )
    _assert_same_outputs(hf_out, lmms_out)


def test_token_prompts_as_the_server_builds_them(tiny_checkpoint, lmms_checkpoint, llm, lmms_llm):
    """One image id per image from the server's PromptBuilder; typed "<image>" text stays text."""
    from server.prompt import PromptBuilder
    from server.schemas import ChatCompletionRequest

    request = ChatCompletionRequest.model_validate(
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "I typed <image> here; now the real ones:"},
                        {"type": "image_url", "image_url": {"url": "data:,"}},
                        {"type": "image_url", "image_url": {"url": "data:,"}},
                        {"type": "text", "text": "Which is brighter?"},
                    ],
                }
            ]
        }
    )
    outs = []
    for engine, path in ((llm, tiny_checkpoint), (lmms_llm, lmms_checkpoint)):
        builder = PromptBuilder.from_pretrained(path, default_system_prompt="You are a helpful assistant.")
        built = builder.build(request, [1, 1])
        assert built.num_images == 2
        outs.append(
            _run(
                engine,
                {"prompt_token_ids": built.prompt_token_ids, "multi_modal_data": {"image": IMAGES[:2]}},
            )
        )
    hf_out, lmms_out = outs
    assert len(lmms_out.prompt_token_ids) == len(hf_out.prompt_token_ids)
    assert lmms_out.prompt_token_ids.count(LMMS_IMAGE_ID) == 2 * 729
    _assert_same_outputs(hf_out, lmms_out)


# -- missing and unexpected tensors ----------------------------------------------------------------


def _write_variant(src: Path, dst: Path, rename=lambda k: k, drop=(), add=None) -> Path:
    """``src`` with its weights renamed, some dropped (``drop``: names), or extra ones added
    (``add(tensors)``)."""
    dst.mkdir(parents=True)
    for f in src.iterdir():
        if f.name != "model.safetensors":
            (dst / f.name).symlink_to(f)
    tensors = load_file(str(src / "model.safetensors"))
    if add is not None:
        add(tensors)
    out = {rename(k): v for k, v in tensors.items() if k not in drop}
    save_file(out, str(dst / "model.safetensors"), metadata={"format": "pt"})
    return dst


def _reloader(engine, original: Path):
    def reload(path: Path) -> None:
        try:
            engine.collective_rpc("reload_weights", kwargs={"weights_path": str(path)})
        finally:
            engine.llm_engine.reset_encoder_cache()
            engine.reset_mm_cache()
            engine.reset_prefix_cache()

    return reload


@pytest.fixture
def reload_lmms(lmms_llm, lmms_checkpoint):
    reload = _reloader(lmms_llm, lmms_checkpoint)
    yield reload
    reload(lmms_checkpoint)


@pytest.fixture
def reload_hf(llm, tiny_checkpoint):
    reload = _reloader(llm, tiny_checkpoint)
    yield reload
    reload(tiny_checkpoint)


def _extra_siglip_layer(prefix: str, index: int):
    def add(tensors):
        for k in [k for k in tensors if k.startswith(prefix + "0.")]:
            tensors[prefix + f"{index}." + k[len(prefix) + 2 :]] = tensors[k].clone()

    return add


LMMS_LAYERS = "model.vision_tower.vision_tower.vision_model.encoder.layers."
HF_LAYERS = "vision_tower.vision_model.encoder.layers."


def test_lmms_lab_checkpoint_loads_without_its_unused_tensors(tmp_path, lmms_checkpoint, reload_lmms):
    """The 27th-layer analogue and image_newline are skipped, not required."""
    unused = [
        k
        for k in load_file(str(lmms_checkpoint / "model.safetensors"))
        if k.startswith(LMMS_LAYERS + "2.") or k == "model.image_newline"
    ]
    assert len(unused) == 17
    reload_lmms(_write_variant(lmms_checkpoint, tmp_path / "trimmed", drop=set(unused)))  # no error


def test_lmms_lab_missing_tensor_fails_naming_it(tmp_path, lmms_checkpoint, reload_lmms):
    missing = "model.layers.1.mlp.down_proj.weight"
    variant = _write_variant(lmms_checkpoint, tmp_path / "gap", drop={missing})
    with pytest.raises(Exception, match=f"checkpoint is missing tensor '{missing}'"):
        reload_lmms(variant)


def test_lmms_lab_unexpected_tensor_fails_naming_it(tmp_path, lmms_checkpoint, reload_lmms):
    variant = _write_variant(
        lmms_checkpoint,
        tmp_path / "extra",
        rename=lambda k: k.replace("model.mm_projector.2.", "model.mm_projector.3."),
    )
    with pytest.raises(Exception, match=r"unexpected tensor 'model\.mm_projector\.3\.(weight|bias)'"):
        reload_lmms(variant)


@pytest.mark.parametrize(
    ("layout", "prefix", "index"),
    [("lmms-lab", LMMS_LAYERS, 3), ("hf", HF_LAYERS, 2)],
)
def test_siglip_layer_past_the_tower_fails_naming_it(
    layout, prefix, index, tmp_path, lmms_checkpoint, tiny_checkpoint, request
):
    """vLLM's SigLIP loader would drop a layer past the tower silently; the adapter refuses it."""
    src, reload = (
        (lmms_checkpoint, request.getfixturevalue("reload_lmms"))
        if layout == "lmms-lab"
        else (tiny_checkpoint, request.getfixturevalue("reload_hf"))
    )
    variant = _write_variant(src, tmp_path / "deeper", add=_extra_siglip_layer(prefix, index))
    with pytest.raises(Exception, match=rf"unexpected tensor '{prefix.replace('.', '[.]')}{index}\."):
        reload(variant)
