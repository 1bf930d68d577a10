"""Unit tests: request validation (400 + param, never 422), settings and CLI flags."""

from __future__ import annotations

import pytest

from server.cli import build_parser, parse_settings, settings_markdown
from server.errors import APIError
from server.prompt import PromptLimits, plan_media
from server.schemas import ChatCompletionRequest, parse_chat_request
from server.settings import ServerSettings

pytestmark = pytest.mark.unit

USER = {"role": "user", "content": "hi"}


def err(body) -> APIError:
    with pytest.raises(APIError) as info:
        parse_chat_request(body)
    assert info.value.status_code == 400
    return info.value


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_tokens", 0),
        ("max_tokens", -3),
        ("temperature", 3),
        ("top_p", 0),
        ("n", 0),
        ("top_logprobs", 21),
        ("presence_penalty", 2.5),
        ("frequency_penalty", -3),
        ("max_completion_tokens", 0),
    ],
)
def test_out_of_range_fields_name_the_field(field, value):
    e = err({"messages": [USER], field: value})
    assert e.param == field
    assert field in e.message


def test_stop_more_than_four():
    assert err({"messages": [USER], "stop": ["a", "b", "c", "d", "e"]}).param == "stop"


@pytest.mark.parametrize("body", [{}, {"messages": []}, {"messages": None}])
def test_messages_missing_or_empty(body):
    assert err(body).param == "messages"


def test_unknown_role():
    e = err({"messages": [{"role": "robot", "content": "hi"}]})
    assert e.param == "messages[0].role"
    assert "robot" not in e.param


def test_unknown_part_type_names_the_part():
    e = err(
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "audio_url"}]}]}
    )
    assert e.param == "messages[0].content[1]"
    assert "audio_url" in e.message


@pytest.mark.parametrize("frames", [0, -2, 33])
def test_num_frames_out_of_range_is_one_400_from_the_media_plan(frames):
    part = {"type": "video_url", "video_url": {"url": "x", "num_frames": frames}}
    request = parse_chat_request(
        {"messages": [{"role": "user", "content": [part]}]}
    )  # the schema checks the type
    with pytest.raises(APIError) as info:
        plan_media(request, PromptLimits(max_images=8, max_frames=32, max_views=8))
    assert info.value.status_code == 400
    assert info.value.param == "messages[0].content[0].video_url.num_frames"


def test_scene_labels_must_match_urls():
    part = {"type": "scene_views", "scene_views": {"urls": ["a", "b"], "labels": ["x"]}}
    e = err({"messages": [{"role": "user", "content": [part]}]})
    assert e.param == "messages[0].content[0].scene_views"


def test_top_logprobs_requires_logprobs():
    assert err({"messages": [USER], "top_logprobs": 2}).param == "top_logprobs"


def test_body_must_be_object():
    assert err([1, 2]).param is None


def test_valid_request_normalizes():
    req = parse_chat_request(
        {
            "model": "m",
            "messages": [
                {"role": "system", "content": "s"},
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": "data:x"}, {"type": "text", "text": "t"}],
                },
            ],
            "stop": "END",
            "max_completion_tokens": 5,
            "max_tokens": 9,
            "stream": True,
            "stream_options": {"include_usage": True},
            "unknown_field": 1,
        }
    )
    assert isinstance(req, ChatCompletionRequest)
    assert req.stop == ["END"]
    assert req.requested_max_tokens == 5
    assert req.include_usage
    assert req.messages[0].content[0].text == "s"
    assert req.messages[1].content[0].image_url.url == "data:x"


def test_settings_from_env_and_flags(monkeypatch):
    monkeypatch.setenv("INTERLEAVE_PORT", "9001")
    monkeypatch.setenv("INTERLEAVE_ALLOWED_REMOTE_HOSTS", "a.example, b.example")
    monkeypatch.setenv("INTERLEAVE_API_KEY", "")
    s = ServerSettings()
    assert s.port == 9001 and s.allowed_remote_hosts == ("a.example", "b.example") and s.api_key is None
    s2 = parse_settings(["--port", "9002", "--no-enable-prefix-caching", "--default-system-prompt", ""])
    assert s2.port == 9002 and s2.enable_prefix_caching is False and s2.default_system_prompt == ""
    assert (
        s2.limit_images_per_prompt
        == s2.max_images_per_request + s2.max_frames_per_request + s2.max_views_per_request
    )


def test_cli_rejects_bad_values(capsys):
    with pytest.raises(SystemExit):
        parse_settings(["--port", "abc"])
    assert "--port" in capsys.readouterr().err


def test_every_setting_has_a_flag_and_docs_row():
    parser = build_parser()
    flags = {a for action in parser._actions for a in action.option_strings}
    table = settings_markdown()
    for name, field in ServerSettings.model_fields.items():
        flag = "--" + name.replace("_", "-")
        assert flag in flags
        assert f"`INTERLEAVE_{name.upper()}`" in table
        assert field.description, name


def test_docs_flag_table_is_current():
    from pathlib import Path

    docs = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text()
    assert settings_markdown() in docs, (
        "regenerate: python -m server.cli --help-markdown (docs/api.md, Configuration)"
    )
