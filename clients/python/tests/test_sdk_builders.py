"""Message builders: wire format of the parts, ordering, scenes from folders, labels."""

from __future__ import annotations

import shutil

import pytest

from llava_interleave_client import MediaError, assistant, image, message, scene, system, text, user, video

pytestmark = pytest.mark.unit


def test_issue_example_keeps_the_order_given(images, videos):
    a, clip, v1, v2 = images["png"], videos["mp4"], images["jpeg"], images["webp"]
    msg = user(
        "Compare",
        image(a),
        video(clip, num_frames=8),
        scene([v1, v2], labels=["front", "back"]),
        "what changed?",
    )
    assert msg["role"] == "user"
    content = msg["content"]
    assert [p["type"] for p in content] == ["text", "image_url", "video_url", "scene_views", "text"]
    assert content[0] == {"type": "text", "text": "Compare"}
    assert content[1]["image_url"]["url"].startswith("data:image/png;base64,")
    assert set(content[2]["video_url"]) == {"url", "num_frames"}  # fps is None: omitted
    assert content[2]["video_url"]["num_frames"] == 8
    assert content[2]["video_url"]["url"].startswith("data:video/mp4;base64,")
    sv = content[3]["scene_views"]
    assert [u.split(";")[0] for u in sv["urls"]] == ["data:image/jpeg", "data:image/webp"]
    assert sv["labels"] == ["front", "back"]
    assert content[4] == {"type": "text", "text": "what changed?"}


def test_video_fields():
    url = "https://example.com/v.mp4"
    assert video(url) == {"type": "video_url", "video_url": {"url": url}}
    assert video(url, fps=2) == {"type": "video_url", "video_url": {"url": url, "fps": 2.0}}
    assert video(url, num_frames=4, fps=0.5)["video_url"] == {"url": url, "num_frames": 4, "fps": 0.5}
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError):
            video(url, num_frames=bad)
    for bad in (0, -1.0, float("nan")):
        with pytest.raises(ValueError):
            video(url, fps=bad)


def test_scene_folder_is_sorted_naturally_and_skips_non_images(tmp_path, images):
    folder = tmp_path / "scan"
    folder.mkdir()
    # content decides what is an image: names and extensions are deliberately misleading
    shutil.copy(images["png"], folder / "view10.png")
    shutil.copy(images["jpeg"], folder / "view2.dat")
    shutil.copy(images["gif"], folder / "view1.png")
    (folder / "notes.png").write_text("not an image")
    shutil.copy(images["bmp"], folder / ".hidden.bmp")
    (folder / "sub").mkdir()
    shutil.copy(images["png"], folder / "sub" / "view0.png")

    part = scene(folder)
    urls = part["scene_views"]["urls"]
    assert [u.split(";")[0] for u in urls] == [
        "data:image/gif",
        "data:image/jpeg",
        "data:image/png",
    ]  # 1, 2, 10
    assert "labels" not in part["scene_views"]
    assert scene(str(folder), labels=["a", "b", "c"])["scene_views"]["labels"] == ["a", "b", "c"]


def test_scene_errors(tmp_path, images):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(MediaError, match="no image files"):
        scene(empty)
    with pytest.raises(FileNotFoundError):
        scene(tmp_path / "missing")
    with pytest.raises(NotADirectoryError):
        scene(images["png"])
    with pytest.raises(MediaError, match="2 labels for 3 views"):
        scene([images["png"]] * 3, labels=["a", "b"])
    with pytest.raises(MediaError, match="not a single string"):
        scene([images["png"]], labels="front")
    with pytest.raises(MediaError, match="at least one view"):
        scene([])
    with pytest.raises(MediaError, match="wrap a single view"):
        scene("https://example.com/a.png")


def test_scene_views_mix_sources(images):
    urls = ["https://example.com/a.png", images["png"].read_bytes(), images["tiff"]]
    part = scene(urls, labels=["cam0", "cam1", "cam2"])
    got = part["scene_views"]["urls"]
    assert got[0] == "https://example.com/a.png"
    assert got[1].startswith("data:image/png;base64,") and got[2].startswith("data:image/tiff;base64,")


def test_message_helpers():
    assert system("be brief") == {"role": "system", "content": "be brief"}
    assert system("a", "b") == {"role": "system", "content": "a\nb"}
    assert assistant("earlier answer") == {"role": "assistant", "content": "earlier answer"}
    assert message("user", "x", [text("y"), "z"])["content"] == [
        {"type": "text", "text": "x"},
        {"type": "text", "text": "y"},
        {"type": "text", "text": "z"},
    ]
    with pytest.raises(TypeError):
        system(image("https://example.com/a.png"))


def test_bare_paths_are_not_guessed(images):
    with pytest.raises(TypeError, match="wrap media"):
        user("look", images["png"])  # a Path must go through image(...)
