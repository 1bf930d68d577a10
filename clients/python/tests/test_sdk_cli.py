"""The interleave-chat CLI: argument order, streaming output, exit codes (against the local stub)."""

from __future__ import annotations

import shutil

import pytest
from sdk_stub_server import Reply, StubServer, chunk, completion, sse, stream_events

from llava_interleave_client.cli import _normalize_argv, build_messages, build_parser, main

pytestmark = pytest.mark.unit


def _parse(argv):
    p = build_parser()
    return p.parse_args(_normalize_argv(p, argv))


def test_parts_follow_command_line_order(images, videos):
    args = _parse(
        [
            "Compare",
            "--image",
            str(images["png"]),
            "--video",
            str(videos["mp4"]),
            "--num-frames",
            "8",
            "--scene",
            f"{images['jpeg']},{images['gif']}",
            "--labels",
            "front,back",
            "what changed?",
            "--max-tokens",
            "5",
        ]
    )
    assert args.max_tokens == 5 and args.stream is True
    (msg,) = build_messages(args)
    content = msg["content"]
    assert [p["type"] for p in content] == ["text", "image_url", "video_url", "scene_views", "text"]
    assert content[0]["text"] == "Compare" and content[4]["text"] == "what changed?"
    assert content[2]["video_url"]["num_frames"] == 8
    assert content[3]["scene_views"]["labels"] == ["front", "back"]
    assert [u.split(";")[0] for u in content[3]["scene_views"]["urls"]] == [
        "data:image/jpeg",
        "data:image/gif",
    ]


def test_media_first_then_text_and_modifier_scope():
    args = _parse(
        [
            "--num-frames=4",
            "--video",
            "https://h/a.mp4",
            "--video",
            "https://h/b.mp4",
            "--fps",
            "2",
            "--text",
            "-dash text",
            "--",
            "--not-an-option",
        ]
    )
    content = build_messages(args)[0]["content"]
    assert content[0]["video_url"] == {"url": "https://h/a.mp4", "num_frames": 4}
    assert content[1]["video_url"] == {"url": "https://h/b.mp4", "num_frames": 4, "fps": 2.0}
    assert [p["text"] for p in content[2:]] == ["-dash text", "--not-an-option"]


def test_scene_folder_and_system(tmp_path, images):
    folder = tmp_path / "views"
    folder.mkdir()
    for i, name in enumerate(["png", "jpeg"]):
        shutil.copy(images[name], folder / f"v{i}.img")
    msgs = build_messages(_parse(["--system", "be brief", "--scene", str(folder), "describe"]))
    assert msgs[0] == {"role": "system", "content": "be brief"}
    assert len(msgs[1]["content"][0]["scene_views"]["urls"]) == 2


def test_labels_without_scene_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        _parse(["--labels", "a,b", "hi"])
    assert info.value.code == 2


def test_nothing_to_send_is_a_usage_error():
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2


def test_streams_answer_to_stdout(capsys, images):
    with StubServer([Reply(events=stream_events("Hel", "lo", usage=True))]) as stub:
        code = main(
            [
                "describe",
                "--image",
                str(images["png"]),
                "--base-url",
                stub.base_url,
                "--api-key",
                "k",
                "--max-tokens",
                "4",
                "--temperature",
                "0",
                "--usage",
                "--image-placement",
                "front",
            ]
        )
    out, err = capsys.readouterr()
    assert code == 0 and out == "Hello\n"
    assert "usage: prompt 5, completion 2, total 7 tokens" in err
    (arrival,) = stub.chat_arrivals
    assert arrival.headers["authorization"] == "Bearer k"
    body = arrival.body
    assert body["model"] == "stub-model" and body["max_tokens"] == 4 and body["temperature"] == 0.0
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["image_placement"] == "front"
    assert [p["type"] for p in body["messages"][0]["content"]] == ["text", "image_url"]


def test_no_stream(capsys):
    with StubServer([Reply(body=completion("whole answer"))]) as stub:
        code = main(["hi", "--base-url", stub.base_url, "--no-stream", "--model", "m2"])
    assert code == 0 and capsys.readouterr().out == "whole answer\n"
    assert stub.chat_arrivals[0].body["model"] == "m2" and "stream" not in stub.chat_arrivals[0].body


def test_errors_exit_non_zero_with_message(capsys, tmp_path):
    err_body = {"error": {"message": "prompt too long: 12000 + 64 > 8192", "type": "invalid_request_error"}}
    with StubServer([Reply(status=400, body=err_body, headers={"x-request-id": "rq"})]) as stub:
        code = main(["hi", "--base-url", stub.base_url])
    _, err = capsys.readouterr()
    assert code == 1
    assert (
        "interleave-chat: error: Error code: 400 - prompt too long: 12000 + 64 > 8192, request_id=rq" in err
    )

    code = main(["hi", "--image", str(tmp_path / "missing.png"), "--base-url", "http://127.0.0.1:9/v1"])
    assert code == 1 and "missing.png" in capsys.readouterr().err

    events = [sse(chunk("par")), sse({"error": {"message": "engine died"}}), sse("[DONE]")]
    with StubServer([Reply(events=events)]) as stub:
        code = main(["hi", "--base-url", stub.base_url])
    out, err = capsys.readouterr()
    assert code == 1 and out.startswith("par") and "engine died" in err

    with StubServer([Reply(events=[sse(chunk("cut"))])]) as stub:
        code = main(["hi", "--base-url", stub.base_url])
    out, err = capsys.readouterr()
    assert code == 1 and out.startswith("cut") and "before data: [DONE]" in err
