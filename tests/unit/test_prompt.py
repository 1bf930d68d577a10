"""Unit tests: prompt rendering (interleaved / front), literal placeholders, limits, token budget."""

from __future__ import annotations

import pytest
from server_fakes import IM_END, IM_START, IMAGE, TOKENS_PER_IMAGE, ByteTokenizer, make_builder

from server.budget import resolve_max_tokens
from server.errors import APIError
from server.prompt import PromptLimits, plan_media
from server.schemas import parse_chat_request

pytestmark = pytest.mark.unit

LIMITS = PromptLimits(max_images=4, max_frames=8, max_views=4, default_num_frames=4)
IMG = {"type": "image_url", "image_url": {"url": "img"}}


def text(t):
    return {"type": "text", "text": t}


def video(n=None):
    return {"type": "video_url", "video_url": {"url": "vid", **({"num_frames": n} if n else {})}}


def scene(urls, labels=None):
    return {"type": "scene_views", "scene_views": {"urls": urls, **({"labels": labels} if labels else {})}}


def req(content, **kw):
    return parse_chat_request({"messages": [{"role": "user", "content": content}], **kw})


def decode(ids):
    return ByteTokenizer().decode(ids)


def test_reference_prompt_single_image():
    b = make_builder()
    p = b.build(req([IMG, text("What is this?")]), [1])
    assert decode(p.prompt_token_ids) == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n<image>\nWhat is this?<|im_end|>\n<|im_start|>assistant\n"
    )
    assert p.num_images == 1
    assert p.prompt_tokens == p.text_tokens + TOKENS_PER_IMAGE


def test_interleaved_mixed_order_and_counts():
    b = make_builder(system_prompt="")
    r = req([text("A"), IMG, text("B"), video(3), scene(["s1", "s2"], ["front", "back"]), text("C")])
    plan = plan_media(r, LIMITS)
    assert [m.kind for m in plan] == ["image", "video", "scene"]
    assert [m.param for m in plan] == [
        "messages[0].content[1]",
        "messages[0].content[3]",
        "messages[0].content[4]",
    ]
    p = b.build(r, [1, 3, 2])
    assert decode(p.prompt_token_ids) == (
        "<|im_start|>user\nA<image>\nB<image><image><image>\nfront: <image>\nback: <image>\nC<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert p.num_images == 6


def test_front_places_visual_parts_first():
    b = make_builder(system_prompt="")
    p = b.build(req([text("A"), IMG, text("B"), IMG], image_placement="front"), [1, 1])
    assert (
        decode(p.prompt_token_ids)
        == "<|im_start|>user\n<image>\n<image>\nAB<|im_end|>\n<|im_start|>assistant\n"
    )


def test_front_matches_hf_template_rendering():
    """front == tokenizing what the checkpoint's chat template renders (fake tokenizer here; the
    e2e suite checks the real tiny checkpoint)."""
    from jinja2 import Template

    from model_adapter.checkpoint import HF_CHAT_TEMPLATE

    messages = [
        {"role": "system", "content": [{"type": "text", "text": "Sys."}]},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Compare "},
                {"type": "image"},
                {"type": "text", "text": "these"},
                {"type": "image"},
            ],
        },
        {"role": "assistant", "content": [{"type": "text", "text": "They differ."}]},
        {"role": "user", "content": [{"type": "text", "text": "Why?"}]},
    ]
    rendered = Template(HF_CHAT_TEMPLATE).render(messages=messages, add_generation_prompt=True)
    ours_req = parse_chat_request(
        {
            "image_placement": "front",
            "messages": [
                {"role": "system", "content": "Sys."},
                {"role": "user", "content": [text("Compare "), IMG, text("these"), IMG]},
                {"role": "assistant", "content": "They differ."},
                {"role": "user", "content": "Why?"},
            ],
        }
    )
    ours = make_builder().build(ours_req, [1, 1]).prompt_token_ids
    assert ours == ByteTokenizer().encode(rendered, split_special_tokens=False)


def test_literal_placeholders_never_bind():
    b = make_builder(system_prompt="")
    p = b.build(req([text("<image> <video> <|im_end|>"), IMG]), [1])
    assert p.prompt_token_ids.count(IMAGE) == 1
    assert p.prompt_token_ids.count(IM_END) == 1
    assert p.prompt_token_ids.count(IM_START) == 2


def test_default_system_prompt_not_added_when_present():
    b = make_builder()
    r = parse_chat_request(
        {"messages": [{"role": "developer", "content": "Be brief."}, {"role": "user", "content": "hi"}]}
    )
    s = decode(b.build(r, []).prompt_token_ids)
    assert s.startswith("<|im_start|>system\nBe brief.<|im_end|>\n")
    assert "helpful" not in s


def test_multi_turn():
    b = make_builder(system_prompt="")
    r = parse_chat_request(
        {
            "messages": [
                {"role": "user", "content": [IMG, text("a")]},
                {"role": "assistant", "content": "b"},
                {"role": "user", "content": [text("c"), IMG]},
            ]
        }
    )
    assert decode(b.build(r, [1, 1]).prompt_token_ids) == (
        "<|im_start|>user\n<image>\na<|im_end|>\n<|im_start|>assistant\nb<|im_end|>\n"
        "<|im_start|>user\nc<image>\n<|im_end|>\n<|im_start|>assistant\n"
    )


@pytest.mark.parametrize(
    ("content", "param", "word"),
    [
        ([IMG] * 5, "messages[0].content[4]", "at most 4"),
        ([video(9)], "messages[0].content[0].video_url.num_frames", "maximum is 8"),
        ([video(5), video(5)], "messages[0].content[1]", "at most 8"),
        ([scene(["a", "b", "c"]), scene(["d", "e"])], "messages[0].content[1]", "at most 4"),
    ],
)
def test_limits(content, param, word):
    with pytest.raises(APIError) as info:
        plan_media(req(content), LIMITS)
    assert info.value.param == param
    assert word in info.value.message


def test_visual_parts_only_in_user_messages():
    r = parse_chat_request({"messages": [{"role": "assistant", "content": [IMG]}]})
    with pytest.raises(APIError) as info:
        plan_media(r, LIMITS)
    assert info.value.param == "messages[0].content[0]"


def test_default_frames_used_for_video_without_num_frames():
    assert plan_media(req([video()]), LIMITS)[0].num_frames == 4


def test_budget():
    b = make_builder(system_prompt="")
    p = b.build(req([IMG, IMG, text("x")]), [1, 1])
    assert resolve_max_tokens(p, None, max_model_len=p.prompt_tokens + 10, default_max_tokens=100) == 10
    assert resolve_max_tokens(p, None, max_model_len=10_000, default_max_tokens=100) == 100
    assert resolve_max_tokens(p, 10, max_model_len=p.prompt_tokens + 10, default_max_tokens=100) == 10
    with pytest.raises(APIError) as info:
        resolve_max_tokens(p, 11, max_model_len=p.prompt_tokens + 10, default_max_tokens=100)
    e = info.value
    assert e.param == "max_tokens" and e.code == "context_length_exceeded"
    for number in (str(p.text_tokens), str(2 * TOKENS_PER_IMAGE), "11", str(p.prompt_tokens + 10)):
        assert number in e.message
    with pytest.raises(APIError) as info:
        resolve_max_tokens(p, None, max_model_len=p.prompt_tokens, default_max_tokens=100)
    assert info.value.param == "messages"
