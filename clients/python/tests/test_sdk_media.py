"""Media type detection from content (magic bytes), data URLs, and the sources builders accept."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from llava_interleave_client import MediaError, image, sniff_media_type, video
from llava_interleave_client._media import SNIFF_BYTES, is_pil_image

pytestmark = pytest.mark.unit

EXPECTED_IMAGE = {
    "png": "image/png",
    "jpeg": "image/jpeg",
    "gif": "image/gif",
    "webp": "image/webp",
    "bmp": "image/bmp",
    "tiff": "image/tiff",
}
EXPECTED_VIDEO = {
    "mp4": "video/mp4",
    "mov": "video/quicktime",
    "mkv": "video/x-matroska",
    "webm": "video/webm",
    "avi": "video/x-msvideo",
    "ts": "video/mp2t",
}


def _decode_data_url(url: str) -> tuple[str, bytes]:
    assert url.startswith("data:")
    header, _, payload = url.partition(",")
    assert header.endswith(";base64")
    return header[len("data:") : -len(";base64")], base64.b64decode(payload)


@pytest.mark.parametrize("name", sorted(EXPECTED_IMAGE))
def test_real_image_files_are_detected(images, name):
    assert sniff_media_type(images[name].read_bytes()[:SNIFF_BYTES]) == EXPECTED_IMAGE[name]


@pytest.mark.parametrize("name", sorted(EXPECTED_VIDEO))
def test_real_video_files_are_detected(videos, name):
    assert sniff_media_type(videos[name].read_bytes()[:SNIFF_BYTES]) == EXPECTED_VIDEO[name]


@pytest.mark.parametrize(
    "head, expected",
    [
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 8, "image/png"),
        (b"\xff\xd8\xff\xe0" + b"\0" * 8, "image/jpeg"),
        (b"GIF87a" + b"\0" * 8, "image/gif"),
        (b"RIFF\x10\0\0\0WEBPVP8 ", "image/webp"),
        (b"RIFF\x10\0\0\0AVI LIST", "video/x-msvideo"),
        (b"II*\x00" + b"\0" * 8, "image/tiff"),
        (b"MM\x00*" + b"\0" * 8, "image/tiff"),
        (b"BM" + b"\x46\0\0\0" + b"\0\0\0\0" + b"\x36\0\0\0" + b"\x28\0\0\0", "image/bmp"),
        (b"\0\0\0\x18ftypisom", "video/mp4"),
        (b"\0\0\0\x14ftypqt  ", "video/quicktime"),
        (b"\0\0\0\x08wide\0\0\0\0mdat", "video/quicktime"),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x84webm", "video/webm"),
        (b"\x1a\x45\xdf\xa3\xa3\x42\x86\x81\x01\x42\x82\x88matroska", "video/x-matroska"),
        ((b"\x47" + b"\x1f" * 187) * 3, "video/mp2t"),
        ((b"\0\0\0\0" + b"\x47" + b"\x1f" * 187) * 3, "video/mp2t"),
        (b"BM is not a bitmap, it is text", None),
        (b"hello world, plain text here", None),
        (b"\x47" + b"\0" * 20, None),  # one sync byte is not a transport stream
        (b"", None),
    ],
)
def test_magic_bytes(head, expected):
    assert sniff_media_type(head) == expected


def test_type_comes_from_content_not_extension(tmp_path, images):
    liar = tmp_path / "photo.jpg"
    liar.write_bytes(images["png"].read_bytes())
    media_type, data = _decode_data_url(image(liar)["image_url"]["url"])
    assert media_type == "image/png"
    assert data == images["png"].read_bytes()

    fake = tmp_path / "clip.mp4"
    fake.write_text("definitely not a video")
    with pytest.raises(MediaError, match="unrecognised content"):
        video(fake)


def test_data_url_round_trip_for_a_video(videos):
    part = video(videos["mkv"], num_frames=4)
    media_type, data = _decode_data_url(part["video_url"]["url"])
    assert media_type == "video/x-matroska"
    assert data == videos["mkv"].read_bytes()


def test_image_and_video_refuse_the_other_kind(images, videos):
    with pytest.raises(MediaError, match="not an image"):
        image(videos["mp4"])
    with pytest.raises(MediaError, match="not a video"):
        video(images["png"])


def test_bytes_file_objects_and_str_paths(images):
    raw = images["jpeg"].read_bytes()
    expected = "data:image/jpeg;base64," + base64.b64encode(raw).decode()
    assert image(raw)["image_url"]["url"] == expected
    assert image(bytearray(raw))["image_url"]["url"] == expected
    assert image(memoryview(raw))["image_url"]["url"] == expected
    assert image(io.BytesIO(raw))["image_url"]["url"] == expected
    assert image(str(images["jpeg"]))["image_url"]["url"] == expected
    with open(images["jpeg"], "rb") as fh:
        assert image(fh)["image_url"]["url"] == expected


def test_text_mode_file_object_is_refused(tmp_path):
    p = tmp_path / "x.txt"
    p.write_text("abc")
    with open(p) as fh, pytest.raises(MediaError, match="binary mode"):
        image(fh)


@pytest.mark.parametrize(
    "url",
    ["https://example.com/a.png", "http://h/b.jpg", "data:image/png;base64,AAAA", "file:///srv/media/c.png"],
)
def test_urls_pass_through(url):
    assert image(url) == {"type": "image_url", "image_url": {"url": url}}
    assert video(url)["video_url"] == {"url": url}


def test_pil_images_are_sent_as_png():
    img = Image.new("RGB", (5, 4), (1, 2, 3))
    assert is_pil_image(img) and not is_pil_image(b"x")
    media_type, data = _decode_data_url(image(img)["image_url"]["url"])
    assert media_type == "image/png"
    back = Image.open(io.BytesIO(data))
    assert back.size == (5, 4) and back.getpixel((0, 0)) == (1, 2, 3)

    cmyk = Image.new("CMYK", (3, 3), (0, 0, 0, 0))  # PNG cannot store CMYK: converted to RGB
    media_type, data = _decode_data_url(image(cmyk)["image_url"]["url"])
    assert media_type == "image/png" and Image.open(io.BytesIO(data)).mode == "RGB"


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        image(tmp_path / "nope.png")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(MediaError, match="empty"):
        image(empty)
    with pytest.raises(MediaError, match="unsupported source type"):
        image(12345)
