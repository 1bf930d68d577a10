"""Every input of docs/inputs.md, sent through HTTP to the live server.

Each test asserts the status, the error's ``param`` / message, and that the next normal request still
succeeds. (How media are decoded is unit-tested with the media module; here each case goes end to end.)
"""

from __future__ import annotations

import base64
import json
import os
from fractions import Fraction

import httpx
import pytest
from transformers import AutoTokenizer

from harness import media

TOKENS_PER_IMAGE = 729
SYSTEM = "You are a helpful assistant."
URL = "/v1/chat/completions"


@pytest.fixture(scope="module")
def tokenizer(live_server):
    return AutoTokenizer.from_pretrained(str(live_server.checkpoint))


def chat(client: httpx.Client, content, **kw) -> httpx.Response:
    body = {"messages": [{"role": "user", "content": content}], "max_tokens": 1, "temperature": 0, **kw}
    return client.post(URL, json=body)


def still_serving(client: httpx.Client) -> None:
    r = chat(client, "Are you still there?")
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["role"] == "assistant"


def bad(
    r: httpx.Response, *, status: int = 400, param: str | None = None, contains: tuple[str, ...] = ()
) -> dict:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["message"]
    if param is not None:
        assert err["param"] == param, err
    for word in contains:
        assert word.lower() in err["message"].lower(), err["message"]
    return err


def image_part(url: str) -> dict:
    return {"type": "image_url", "image_url": {"url": url}}


def video_part(url: str, **kw) -> dict:
    return {"type": "video_url", "video_url": {"url": url, **kw}}


def visual_items(tokenizer, r: httpx.Response, text: str) -> int:
    """How many images/frames the engine saw for a [text, one visual part] request."""
    rendered = f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{text}<image>\n<|im_end|>\n<|im_start|>assistant\n"
    ids = tokenizer(rendered, add_special_tokens=False)["input_ids"]
    text_tokens = len(ids) - 1
    visual = r.json()["usage"]["prompt_tokens"] - text_tokens
    assert visual % TOKENS_PER_IMAGE == 0, visual
    return visual // TOKENS_PER_IMAGE


# --- images ------------------------------------------------------------------------------------------


def test_text_posing_as_png_is_400(client):
    url = "data:image/png;base64," + base64.b64encode(b"This is just a short ASCII sentence.").decode()
    bad(chat(client, [{"type": "text", "text": "What?"}, image_part(url)]), param="messages[0].content[1]")
    still_serving(client)


def test_png_cut_after_ihdr_is_400(client):
    bad(chat(client, [image_part(media.data_url(media.truncated_png()))]), param="messages[0].content[0]")
    still_serving(client)


def test_base64_without_padding_is_accepted(client, tokenizer):
    r = chat(client, [{"type": "text", "text": "Look"}, image_part(media.unpadded_b64_url())])
    assert r.status_code == 200, r.text
    assert visual_items(tokenizer, r, "Look") == 1


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(lambda: media.png(1, 1, (128, 128, 128), mode="L"), id="1x1-gray"),
        pytest.param(lambda: media.png(20, 300), id="20x300-strip"),
        pytest.param(media.rgba_png, id="rgba"),
        pytest.param(media.la_png, id="la"),
        pytest.param(media.palette_png, id="palette"),
        pytest.param(media.cmyk_jpeg, id="cmyk-jpeg"),
        pytest.param(media.gray16_png, id="16-bit-gray"),
        pytest.param(media.animated_gif, id="animated-gif-first-frame"),
    ],
)
def test_unusual_images_are_accepted_as_one_image(client, tokenizer, raw):
    data = raw()
    mime = "image/jpeg" if data[:2] == b"\xff\xd8" else "image/gif" if data[:3] == b"GIF" else "image/png"
    r = chat(client, [{"type": "text", "text": "Look"}, image_part(media.data_url(data, mime))])
    assert r.status_code == 200, r.text
    assert visual_items(tokenizer, r, "Look") == 1  # an animated GIF is its first frame only


def test_decompression_bomb_header_is_400(client):
    err = bad(
        chat(client, [image_part(media.data_url(media.png_with_declared_size(50_000, 50_000)))]),
        param="messages[0].content[0]",
    )
    assert "pixel" in err["message"].lower()
    still_serving(client)


def test_more_images_than_the_limit_is_400(client):
    settings_limit = 16  # the default --max-images-per-request
    parts = [image_part(media.png_url(8, 8))] * (settings_limit + 1)
    bad(
        chat(client, parts),
        param=f"messages[0].content[{settings_limit}]",
        contains=(f"at most {settings_limit}",),
    )
    still_serving(client)


def test_too_many_tokens_for_the_context_is_400_with_numbers(client):
    parts = [image_part(media.png_url(8, 8))] * 12  # 12 x 729 = 8748 > 8192
    err = bad(chat(client, parts), contains=("8748", "8192", "visual tokens"))
    assert err["code"] == "context_length_exceeded"
    err = bad(chat(client, "hi", max_tokens=9000), param="max_tokens", contains=("9000", "8192"))
    still_serving(client)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/secret.png",
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.1/x.png",
        "file:///etc/passwd",
    ],
)
def test_private_addresses_and_files_are_refused(client, url):
    err = bad(chat(client, [{"type": "text", "text": "x"}, image_part(url)]), param="messages[0].content[1]")
    assert (
        "not allowed" in err["message"].lower()
        or "refused" in err["message"].lower()
        or "allowed" in err["message"].lower()
    )
    still_serving(client)


def test_file_below_allowed_dir_is_accepted(client, live_server, tokenizer):
    path = live_server.media_dir / "ok.png"
    path.write_bytes(media.png(16, 16))
    r = chat(client, [{"type": "text", "text": "Look"}, image_part(path.as_uri())])
    assert r.status_code == 200, r.text
    assert visual_items(tokenizer, r, "Look") == 1
    outside = live_server.media_dir.parent / "outside.png"
    outside.write_bytes(media.png(16, 16))
    bad(chat(client, [image_part(outside.as_uri())]), param="messages[0].content[0]")


def test_remote_404_and_timeout_name_the_url(client, media_http_server, tokenizer):
    ok = chat(client, [{"type": "text", "text": "Look"}, image_part(f"{media_http_server}/image.png")])
    assert ok.status_code == 200, ok.text
    for path in ("/missing.png", "/slow.png"):
        url = media_http_server + path
        err = bad(chat(client, [image_part(url)]), param="messages[0].content[0]")
        assert path in err["message"], err["message"]
    still_serving(client)


# --- videos ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(lambda: os.urandom(4096), id="random-bytes"),
        pytest.param(lambda: b"", id="empty"),
        pytest.param(lambda: b"just some text, not a video\n" * 20, id="text-file"),
    ],
)
def test_unreadable_videos_are_400(client, raw):
    data = raw()
    url = "data:video/mp4;base64," + base64.b64encode(data).decode()
    bad(
        chat(client, [{"type": "text", "text": "x"}, video_part(url, num_frames=4)]),
        param="messages[0].content[1]",
    )
    still_serving(client)


def test_corrupted_middle_packets_sample_the_frames_that_decode(client, tokenizer):
    clip = media.corrupted_middle(media.encode_video(24, 8, gop=4))
    r = chat(client, [{"type": "text", "text": "Watch"}, video_part(media.video_url(clip), num_frames=8)])
    assert r.status_code == 200, r.text
    assert 1 <= visual_items(tokenizer, r, "Watch") <= 8


def test_variable_frame_rate_clip_gives_requested_frames(client, tokenizer):
    clip = media.encode_video(
        8, 4, pts=[0, 100, 150, 700, 800, 1500, 1600, 2000], time_base=Fraction(1, 1000)
    )
    r = chat(client, [{"type": "text", "text": "Watch"}, video_part(media.video_url(clip), num_frames=4)])
    assert r.status_code == 200, r.text
    assert visual_items(tokenizer, r, "Watch") == 4


def test_overstated_frame_count_gives_requested_frames(client, tokenizer):
    clip = media.overstated_frame_count(16)
    r = chat(client, [{"type": "text", "text": "Watch"}, video_part(media.video_url(clip), num_frames=4)])
    assert r.status_code == 200, r.text
    assert visual_items(tokenizer, r, "Watch") == 4


def test_short_clip_gives_the_frames_it_has(client, tokenizer):
    clip = media.encode_video(2, 1)  # 2 s at 1 fps
    r = chat(client, [{"type": "text", "text": "Watch"}, video_part(media.video_url(clip), num_frames=16)])
    assert r.status_code == 200, r.text
    assert visual_items(tokenizer, r, "Watch") == 2


@pytest.mark.parametrize(
    ("frames", "param_suffix"),
    [(0, ".video_url.num_frames"), (-3, ".video_url.num_frames"), (33, ".video_url.num_frames")],
)
def test_bad_num_frames_is_400(client, frames, param_suffix):
    url = media.video_url(media.encode_video(4, 4))
    bad(
        chat(client, [{"type": "text", "text": "x"}, video_part(url, num_frames=frames)]),
        param="messages[0].content[1]" + param_suffix,
    )
    still_serving(client)


def test_image_video_scene_in_one_message_in_order(client, tokenizer):
    content = [
        image_part(media.png_url(16, 16)),
        video_part(media.video_url(media.encode_video(4, 4)), num_frames=2),
        {"type": "scene_views", "scene_views": {"urls": [media.png_url(8, 8), media.png_url(9, 9)]}},
    ]
    r = chat(client, content)
    assert r.status_code == 200, r.text
    rendered = (
        f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n<image>\n<image><image>\n<image>\n<image>\n"
        "<|im_end|>\n<|im_start|>assistant\n"
    )
    ids = tokenizer(rendered, add_special_tokens=False)["input_ids"]
    assert r.json()["usage"]["prompt_tokens"] == len(ids) - 5 + 5 * TOKENS_PER_IMAGE


# --- request fields ----------------------------------------------------------------------------------


def test_body_that_is_not_json_is_400(client):
    r = client.post(URL, content=b"{'messages': nope", headers={"content-type": "application/json"})
    bad(r, contains=("json",))
    still_serving(client)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "messages"),
        ({"messages": []}, "messages"),
        (
            {"messages": [{"role": "user", "content": [{"type": "audio_url", "audio_url": {"url": "x"}}]}]},
            "messages[0].content[0]",
        ),
        ({"messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}, "max_tokens"),
        ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": -5}, "max_tokens"),
        ({"messages": [{"role": "user", "content": "hi"}], "temperature": 3}, "temperature"),
        ({"messages": [{"role": "user", "content": "hi"}], "top_p": 0}, "top_p"),
        ({"messages": [{"role": "user", "content": "hi"}], "n": 0}, "n"),
    ],
)
def test_bad_request_fields_are_400_naming_the_field(client, body, param):
    err = bad(client.post(URL, json=body), param=param)
    assert err["type"] == "invalid_request_error"
    still_serving(client)


def test_body_over_the_limit_is_413_before_parsing(client):
    big = b'{"messages": "' + b"x" * (8 * 2**20 + 10) + b'"}'
    r = client.post(URL, content=big, headers={"content-type": "application/json"})
    bad(r, status=413)

    # streamed without Content-Length: counted while reading
    def gen():
        for _ in range(9):
            yield b" " * 2**20

    r = client.post(URL, content=gen(), headers={"content-type": "application/json"})
    bad(r, status=413)
    still_serving(client)


def test_api_error_keeps_openai_shape_for_unknown_route(client):
    r = client.get("/v1/nothing-here")
    assert r.status_code == 404 and json.loads(r.text)["error"]["type"] == "not_found_error"
