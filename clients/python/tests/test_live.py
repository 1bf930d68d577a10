"""Live tests of the SDK against a running server.

Set ``INTERLEAVE_TEST_BASE_URL`` (e.g. ``http://127.0.0.1:8000/v1``) to run them; without it they are
skipped (and only then). ``INTERLEAVE_TEST_API_KEY`` is sent if the server needs a key.

Written for the built-in tiny model: random weights, so answers are gibberish but deterministic at
temperature 0 with a fixed seed; every image (video frame, scene view) costs 729 prompt tokens. The module
is self-contained (its own fixtures; media from the examples' generator, Pillow / PyAV), so the top-level
suite can run it by path: ``INTERLEAVE_TEST_BASE_URL=... pytest clients/python/tests/test_live.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import openai
import pytest
from PIL import Image

import llava_interleave_client as sdk
from llava_interleave_client import image, scene, system, user, video

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from example_media import make_media

pytestmark = pytest.mark.e2e

API_KEY = os.environ.get("INTERLEAVE_TEST_API_KEY") or "no-key"
TOKENS_PER_IMAGE = 729
SEED = 1234
GREEDY = dict(temperature=0, seed=SEED, max_tokens=8)


@pytest.fixture(scope="module")
def live_base_url() -> str:
    """The server's API root, ``$INTERLEAVE_TEST_BASE_URL`` (read when the first test needs it)."""
    url = os.environ.get("INTERLEAVE_TEST_BASE_URL")
    if not url:
        pytest.skip("set INTERLEAVE_TEST_BASE_URL to run live SDK tests")
    return url


@pytest.fixture(scope="module")
def live_client(live_base_url):
    with sdk.Client(base_url=live_base_url, api_key=API_KEY, timeout=300) as client:
        yield client


@pytest.fixture(scope="module")
def live_model(live_client) -> str:
    models = live_client.models.list()
    assert models.data, "GET /v1/models lists no model"
    return models.data[0].id


@pytest.fixture(scope="module")
def live_media(tmp_path_factory) -> dict:
    """The examples' media (examples/example_media.py), so that its generator is tested too: ``image`` (PNG),
    ``image2`` (JPEG), ``video`` (8 frames at 4 fps, H.264 MP4) and ``scene`` (a folder of 3 views)."""
    return make_media(str(tmp_path_factory.mktemp("live-media")))


def _ask(client, model, *parts, **kw):
    return client.chat.completions.create(model=model, messages=[user(*parts)], **{**GREEDY, **kw})


def _text(completion) -> str:
    return completion.choices[0].message.content or ""


# --- builders, sync ------------------------------------------------------------------------------------


def test_text_only(live_client, live_model):
    out = _ask(live_client, live_model, "Say something.")
    assert isinstance(out, sdk.ChatCompletion) and out.model
    assert out.choices[0].finish_reason in ("stop", "length")
    assert out.usage.prompt_tokens > 0 and out.usage.completion_tokens > 0
    assert out.usage.total_tokens == out.usage.prompt_tokens + out.usage.completion_tokens


def test_image_costs_729_tokens(live_client, live_model, live_media):
    one = _ask(live_client, live_model, "Describe", image(live_media["image"]))
    two = _ask(live_client, live_model, "Describe", image(live_media["image"]), image(live_media["image2"]))
    assert one.usage.prompt_tokens >= TOKENS_PER_IMAGE
    # the second image adds its 729 visual tokens (plus at most a few separator tokens of the template)
    assert TOKENS_PER_IMAGE <= two.usage.prompt_tokens - one.usage.prompt_tokens <= TOKENS_PER_IMAGE + 8


def test_image_sources_agree(live_client, live_model, live_media):
    """Path, bytes, file object and PIL image (same pixels, lossless) give the same greedy answer."""
    path = live_media["image"]
    by_path = _text(_ask(live_client, live_model, "Describe", image(path)))
    assert _text(_ask(live_client, live_model, "Describe", image(path.read_bytes()))) == by_path
    with open(path, "rb") as fh:
        assert _text(_ask(live_client, live_model, "Describe", image(fh))) == by_path
    with Image.open(path) as img:
        assert _text(_ask(live_client, live_model, "Describe", image(img.copy()))) == by_path
    out = _ask(live_client, live_model, "Describe", image(live_media["image2"]))
    assert out.usage.prompt_tokens >= TOKENS_PER_IMAGE


def test_video_num_frames_and_fps(live_client, live_model, live_media):
    clip = live_media["video"]
    four = _ask(live_client, live_model, "What happens?", video(clip, num_frames=4))
    two = _ask(live_client, live_model, "What happens?", video(clip, num_frames=2))
    assert four.usage.prompt_tokens >= 4 * TOKENS_PER_IMAGE
    assert four.usage.prompt_tokens - two.usage.prompt_tokens >= 2 * TOKENS_PER_IMAGE
    by_fps = _ask(live_client, live_model, "What happens?", video(clip, fps=1))  # a 2 s clip: about 2 frames
    assert TOKENS_PER_IMAGE <= by_fps.usage.prompt_tokens < four.usage.prompt_tokens


def test_scene_folder_and_labels(live_client, live_model, live_media):
    plain = _ask(live_client, live_model, "Where is the camera?", scene(live_media["scene"]))
    labelled = _ask(
        live_client,
        live_model,
        "Where is the camera?",
        scene(live_media["scene"], labels=["front", "left", "back"]),
    )
    assert plain.usage.prompt_tokens >= 3 * TOKENS_PER_IMAGE
    assert labelled.usage.prompt_tokens > plain.usage.prompt_tokens  # labels are written as text


def test_everything_interleaved_in_one_message(live_client, live_model, live_media):
    out = live_client.chat.completions.create(
        model=live_model,
        messages=[
            system("You are a helpful assistant."),
            user(
                "Compare",
                image(live_media["image"]),
                video(live_media["video"], num_frames=2),
                scene([live_media["image"], live_media["image2"]], labels=["front", "back"]),
                "what changed?",
            ),
        ],
        **GREEDY,
    )
    assert out.usage.prompt_tokens >= 5 * TOKENS_PER_IMAGE  # 1 image + 2 frames + 2 views
    for placement in ("interleaved", "front"):
        again = _ask(
            live_client,
            live_model,
            "Compare",
            image(live_media["image"]),
            "and",
            image(live_media["image2"]),
            extra_body={"image_placement": placement},
        )
        assert again.usage.prompt_tokens >= 2 * TOKENS_PER_IMAGE


# --- streaming, async ----------------------------------------------------------------------------------


def test_stream_matches_non_stream(live_client, live_model, live_media):
    parts = ("Describe", image(live_media["image"]))
    whole = _ask(live_client, live_model, *parts)
    with _ask(live_client, live_model, *parts, stream=True, stream_options={"include_usage": True}) as stream:
        chunks = list(stream)
    assert stream.response.is_closed
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == _text(whole)
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        whole.choices[0].finish_reason
    ]
    assert chunks[-1].choices == [] and chunks[-1].usage.prompt_tokens == whole.usage.prompt_tokens


def test_stream_closed_early(live_client, live_model):
    stream = _ask(live_client, live_model, "Count to one hundred.", stream=True, max_tokens=64)
    next(iter(stream))
    stream.close()
    assert stream.response.is_closed
    assert _ask(live_client, live_model, "Still alive?").choices  # the server carries on


@pytest.mark.asyncio
async def test_async_matches_sync(live_client, live_model, live_media, live_base_url):
    parts = ("Compare", image(live_media["image"]), video(live_media["video"], num_frames=2))
    expected = _text(_ask(live_client, live_model, *parts))
    async with sdk.AsyncClient(base_url=live_base_url, api_key=API_KEY, timeout=300) as client:
        out = await client.chat.completions.create(model=live_model, messages=[user(*parts)], **GREEDY)
        assert _text(out) == expected
        stream = await client.chat.completions.create(
            model=live_model, messages=[user(*parts)], stream=True, **GREEDY
        )
        async with stream:
            text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        assert text == expected and stream.response.is_closed


# --- the builders with a plain openai client ------------------------------------------------------------


def test_builders_work_with_plain_openai_client(live_client, live_model, live_media, live_base_url):
    messages = [user("Describe", image(live_media["image"]), "and", video(live_media["video"], num_frames=2))]
    ours = live_client.chat.completions.create(model=live_model, messages=messages, **GREEDY)
    theirs = openai.OpenAI(base_url=live_base_url, api_key=API_KEY).chat.completions.create(
        model=live_model, messages=messages, **GREEDY
    )
    assert theirs.choices[0].message.content == _text(ours)
    assert theirs.usage.prompt_tokens == ours.usage.prompt_tokens >= 3 * TOKENS_PER_IMAGE


# --- errors --------------------------------------------------------------------------------------------


def test_context_overflow_is_a_bad_request(live_client, live_model):
    with pytest.raises(sdk.BadRequestError) as info:
        _ask(live_client, live_model, "hi", max_tokens=10_000_000)
    assert info.value.status_code == 400 and info.value.body["message"] and info.value.request_id


def test_unreadable_image_is_a_bad_request(live_client, live_model):
    with pytest.raises(sdk.BadRequestError):
        _ask(live_client, live_model, "hi", image("data:image/png;base64,bm90IGFuIGltYWdl"))
    with pytest.raises(sdk.BadRequestError) as info:  # our own field, checked by the server
        _ask(live_client, live_model, "hi", extra_body={"image_placement": "sideways"})
    assert "image_placement" in str(info.value.body)


# --- CLI -----------------------------------------------------------------------------------------------


def test_cli_streams_and_matches_sdk(live_client, live_model, live_media, live_base_url):
    exe = Path(sys.executable).with_name("interleave-chat")
    expected = _text(_ask(live_client, live_model, "Describe", image(live_media["image"])))
    cmd = [
        str(exe),
        "Describe",
        "--image",
        str(live_media["image"]),
        "--base-url",
        live_base_url,
        "--api-key",
        API_KEY,
        "--model",
        live_model,
        "--temperature",
        "0",
        "--seed",
        str(SEED),
        "--max-tokens",
        "8",
    ]
    for extra in ([], ["--no-stream"]):
        proc = subprocess.run(cmd + extra, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == expected + "\n"
