"""server.media: URLs, SSRF policy, image decoding, video sampling (cases of shared/cases/README.md).

All media is generated here (Pillow, PyAV's libx264); HTTP goes only to a server on 127.0.0.1 or to
an httpx MockTransport (for addresses that must never be contacted).
"""

from __future__ import annotations

import asyncio
import base64
import io
import socket
import threading
import urllib.parse
from fractions import Fraction

import httpx
import numpy as np
import pytest
from PIL import Image, ImageFile

from media_fixtures import (
    LocalServer,
    corrupt_packets,
    data_url,
    decode_all,
    encode_h264,
    frame_index,
    image_bytes,
    packet_spans,
    png_bytes,
    png_with_declared_size,
    slow_route,
    unsized_route,
)
from server.media import (
    MediaError,
    MediaLimits,
    MediaLoader,
    VideoFrames,
    decode_image,
    sample_video,
)

LIMITS = MediaLimits()


def load(url: str, limits: MediaLimits = LIMITS, **loader_kwargs) -> Image.Image:
    async def go():
        loader = MediaLoader(limits, **loader_kwargs)
        try:
            return await loader.load_image(url)
        finally:
            await loader.aclose()

    return asyncio.run(go())


def load_video(url: str, limits: MediaLimits = LIMITS, **kwargs) -> VideoFrames:
    async def go():
        loader = MediaLoader(limits)
        try:
            return await loader.load_video(url, **kwargs)
        finally:
            await loader.aclose()

    return asyncio.run(go())


def fetch(url: str, limits: MediaLimits, **loader_kwargs) -> bytes:
    async def go():
        loader = MediaLoader(limits, **loader_kwargs)
        try:
            return await loader.fetch(url)
        finally:
            await loader.aclose()

    return asyncio.run(go())


def rgb(img: Image.Image, xy=(0, 0)) -> tuple[int, int, int]:
    assert img.mode == "RGB"
    return img.getpixel(xy)


def close_to(actual, expected, tol=3) -> bool:
    return all(abs(int(a) - int(e)) <= tol for a, e in zip(actual, expected))


@pytest.fixture(scope="module")
def small_png() -> bytes:
    img = Image.new("RGB", (8, 8), (10, 200, 30))
    return png_bytes(img)


# ---------------------------------------------------------------------------------------------
# Images: not an image, truncated, padding, sizes
# ---------------------------------------------------------------------------------------------


def test_data_url_png_of_ascii_sentence_is_not_an_image():
    url = "data:image/png;base64," + base64.b64encode(b"This is not a picture at all.").decode()
    with pytest.raises(MediaError, match="not a readable image"):
        load(url)


def test_png_data_url_cut_after_ihdr_is_rejected(small_png):
    assert small_png[12:16] == b"IHDR"
    cut = small_png[: 8 + 25]  # signature + IHDR chunk (length, type, 13 bytes, crc)
    with pytest.raises(MediaError, match="truncated or corrupt"):
        load(data_url(cut))


def test_truncated_jpeg_is_rejected():
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    jpeg = image_bytes(Image.fromarray(noise), "JPEG")
    with pytest.raises(MediaError, match="truncated or corrupt"):
        decode_image(jpeg[: len(jpeg) // 2], LIMITS)


def test_empty_and_random_bytes_are_not_images():
    with pytest.raises(MediaError, match="empty"):
        decode_image(b"", LIMITS)
    with pytest.raises(MediaError, match="not a readable image"):
        decode_image(np.random.default_rng(1).bytes(2000), LIMITS)


def test_postscript_is_not_decoded_through_ghostscript():
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"
    with pytest.raises(MediaError, match="not a readable image"):
        decode_image(eps, LIMITS)


def test_base64_without_trailing_padding_of_8x8_png_is_accepted(small_png):
    url = data_url(small_png)
    assert url.endswith("=")
    img = load(url.rstrip("="))
    assert img.size == (8, 8) and rgb(img) == (10, 200, 30)


def test_base64_data_url_with_whitespace_and_urlsafe_alphabet_is_accepted(small_png):
    b64 = base64.b64encode(small_png).decode()
    wrapped = "\n".join(b64[i : i + 20] for i in range(0, len(b64), 20))
    assert load("data:image/png;base64,\n" + wrapped + "\n").size == (8, 8)
    urlsafe = base64.urlsafe_b64encode(small_png).decode()
    assert load("data:image/png;base64," + urlsafe).size == (8, 8)


def test_percent_encoded_data_url_is_accepted(small_png):
    url = "data:image/png," + urllib.parse.quote_from_bytes(small_png)
    assert load(url).size == (8, 8)


def test_data_url_with_invalid_base64_is_rejected():
    with pytest.raises(MediaError, match="not valid base64"):
        load("data:image/png;base64,@@@@****")


def test_1x1_grayscale_png_is_accepted():
    img = decode_image(png_bytes(Image.new("L", (1, 1), 77)), LIMITS)
    assert img.size == (1, 1) and rgb(img) == (77, 77, 77)


def test_20x300_strip_is_accepted():
    img = decode_image(png_bytes(Image.new("RGB", (20, 300), (1, 2, 3))), LIMITS)
    assert img.size == (20, 300) and img.mode == "RGB"


# ---------------------------------------------------------------------------------------------
# Images: modes -> 8-bit RGB, transparency on white
# ---------------------------------------------------------------------------------------------


def test_rgba_is_composited_on_white():
    img = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    img.putpixel((1, 1), (255, 0, 0, 255))
    img.putpixel((2, 2), (0, 0, 0, 128))
    out = decode_image(png_bytes(img), LIMITS)
    assert rgb(out, (0, 0)) == (255, 255, 255)
    assert rgb(out, (1, 1)) == (255, 0, 0)
    assert close_to(rgb(out, (2, 2)), (127, 127, 127), tol=1)


def test_la_is_composited_on_white():
    img = Image.new("LA", (2, 1), (0, 0))
    img.putpixel((1, 0), (40, 255))
    out = decode_image(png_bytes(img), LIMITS)
    assert rgb(out, (0, 0)) == (255, 255, 255)
    assert rgb(out, (1, 0)) == (40, 40, 40)


def test_palette_with_and_without_transparency():
    pal = Image.new("P", (2, 1))
    pal.putpalette([0, 0, 255, 255, 0, 0] + [0] * 762)
    pal.putpixel((0, 0), 0)
    pal.putpixel((1, 0), 1)
    plain = decode_image(png_bytes(pal), LIMITS)
    assert rgb(plain, (0, 0)) == (0, 0, 255) and rgb(plain, (1, 0)) == (255, 0, 0)
    transparent = decode_image(png_bytes(pal, transparency=0), LIMITS)
    assert rgb(transparent, (0, 0)) == (255, 255, 255) and rgb(transparent, (1, 0)) == (255, 0, 0)
    gif = decode_image(image_bytes(pal, "GIF", transparency=0), LIMITS)
    assert rgb(gif, (0, 0)) == (255, 255, 255) and rgb(gif, (1, 0)) == (255, 0, 0)


def test_rgb_png_with_transparent_colour_key():
    img = Image.new("RGB", (2, 1), (9, 9, 9))
    img.putpixel((1, 0), (0, 128, 0))
    out = decode_image(png_bytes(img, transparency=(9, 9, 9)), LIMITS)
    assert rgb(out, (0, 0)) == (255, 255, 255) and rgb(out, (1, 0)) == (0, 128, 0)


def test_cmyk_jpeg_is_converted_to_rgb():
    img = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # pure red in CMYK
    data = image_bytes(img, "JPEG", quality=95)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    out = decode_image(data, LIMITS)
    assert out.mode == "RGB" and close_to(rgb(out, (8, 8)), (255, 0, 0), tol=6)


def test_16_bit_grayscale_png_is_scaled_to_8_bit():
    values = np.array([[0, 257 * 128, 65535, 1000]], dtype=np.uint16)
    data = png_bytes(Image.fromarray(values))
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    out = decode_image(data, LIMITS)
    assert [rgb(out, (x, 0))[0] for x in range(4)] == [0, 128, 255, 4]
    assert rgb(out, (2, 0)) == (255, 255, 255)


def test_32_bit_integer_grayscale_tiff_is_scaled_like_16_bit():
    values = np.array([[0, 65535, 32896]], dtype=np.int32)
    data = image_bytes(Image.fromarray(values, mode="I"), "TIFF")
    assert Image.open(io.BytesIO(data)).mode == "I"
    out = decode_image(data, LIMITS)
    assert [rgb(out, (x, 0))[0] for x in range(3)] == [0, 255, 128]


def test_1_bit_png_is_black_and_white_rgb():
    img = Image.new("1", (2, 1), 0)
    img.putpixel((1, 0), 1)
    out = decode_image(png_bytes(img), LIMITS)
    assert rgb(out, (0, 0)) == (0, 0, 0) and rgb(out, (1, 0)) == (255, 255, 255)


def test_exif_orientation_is_applied():
    img = Image.new("RGB", (20, 10), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 4, 4))  # stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    out = decode_image(image_bytes(img, "JPEG", exif=exif, quality=95), LIMITS)
    assert out.size == (10, 20)
    assert close_to(rgb(out, (8, 1)), (255, 0, 0), tol=40)  # now top-right
    assert close_to(rgb(out, (1, 1)), (0, 0, 255), tol=40)


def test_animated_gif_gives_its_first_frame():
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    data = image_bytes(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    assert Image.open(io.BytesIO(data)).n_frames == 3
    assert rgb(decode_image(data, LIMITS)) == (255, 0, 0)


def test_animated_png_gives_its_first_frame():
    frames = [Image.new("RGBA", (8, 8), c) for c in ((0, 255, 0, 255), (255, 0, 0, 255))]
    data = png_bytes(frames[0], save_all=True, append_images=frames[1:], duration=100)
    assert Image.open(io.BytesIO(data)).n_frames == 2
    assert rgb(decode_image(data, LIMITS)) == (0, 255, 0)


# ---------------------------------------------------------------------------------------------
# Images: pixel limit from the header, before decoding
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def no_pixel_decoding(monkeypatch):
    def refuse(self, *args, **kwargs):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)


def test_png_header_declaring_50000x50000_is_rejected_before_decoding(no_pixel_decoding):
    data = png_with_declared_size(50000, 50000)
    assert len(data) < 10_000
    with pytest.raises(MediaError, match="more pixels than the limit of 50000000"):
        load(data_url(data))


@pytest.mark.parametrize("side", [7100, 8000])  # 50.4 and 64 megapixels: above our default limit
def test_png_header_above_configured_pixel_limit_is_rejected_before_decoding(
    no_pixel_decoding, side
):
    with pytest.raises(MediaError, match="more than the limit of 50000000 pixels"):
        decode_image(png_with_declared_size(side, side), LIMITS)


def test_pixel_limit_above_pillows_own_bomb_limit_is_the_one_that_counts(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)  # restored afterwards
    header_only = png_with_declared_size(15000, 12000)  # 180 Mpx: past Pillow's error threshold
    with pytest.raises(MediaError, match="truncated or corrupt"):  # allowed, but no pixel data
        decode_image(header_only, MediaLimits(max_image_pixels=200_000_000))
    with pytest.raises(MediaError, match="limit of 100000000"):
        decode_image(header_only, MediaLimits(max_image_pixels=100_000_000))


def test_pixel_limit_is_configurable():
    data = png_bytes(Image.new("RGB", (20, 20)))
    with pytest.raises(MediaError, match="20x20 = 400 pixels"):
        decode_image(data, MediaLimits(max_image_pixels=399))
    assert decode_image(data, MediaLimits(max_image_pixels=400)).size == (20, 20)


def test_image_larger_than_byte_limit_is_rejected(small_png):
    with pytest.raises(MediaError, match="limit"):
        load(data_url(small_png), MediaLimits(max_media_bytes=len(small_png) - 1))


# ---------------------------------------------------------------------------------------------
# URLs: schemes, file://
# ---------------------------------------------------------------------------------------------


def test_unsupported_scheme_is_rejected():
    with pytest.raises(MediaError, match="unsupported URL scheme"):
        load("ftp://example.org/a.png")
    with pytest.raises(MediaError, match="empty"):
        load("")


def test_file_etc_passwd_is_refused_without_allowed_media_dir():
    with pytest.raises(MediaError, match="not allowed"):
        load("file:///etc/passwd")


def test_file_etc_passwd_is_refused_outside_allowed_media_dir(tmp_path):
    limits = MediaLimits(allowed_media_dir=tmp_path)
    with pytest.raises(MediaError, match="outside the allowed media directory"):
        load("file:///etc/passwd", limits)
    with pytest.raises(MediaError, match="outside the allowed media directory"):
        load(f"file://{tmp_path}/../../etc/passwd", limits)


def test_file_below_allowed_media_dir_is_accepted(tmp_path, small_png):
    (tmp_path / "sub dir").mkdir()
    path = tmp_path / "sub dir" / "a.png"
    path.write_bytes(small_png)
    limits = MediaLimits(allowed_media_dir=tmp_path)
    assert load(path.as_uri(), limits).size == (8, 8)
    with pytest.raises(MediaError, match="no such file"):
        load((tmp_path / "missing.png").as_uri(), limits)


def test_symlink_leaving_allowed_media_dir_is_refused(tmp_path, small_png):
    outside = tmp_path / "outside.png"
    outside.write_bytes(small_png)
    allowed = tmp_path / "media"
    allowed.mkdir()
    (allowed / "link.png").symlink_to(outside)
    with pytest.raises(MediaError, match="outside the allowed media directory"):
        load((allowed / "link.png").as_uri(), MediaLimits(allowed_media_dir=allowed))


def test_file_url_over_byte_limit_is_refused(tmp_path, small_png):
    (tmp_path / "a.png").write_bytes(small_png)
    limits = MediaLimits(allowed_media_dir=tmp_path, max_media_bytes=len(small_png) - 1)
    with pytest.raises(MediaError, match="larger than the limit"):
        load((tmp_path / "a.png").as_uri(), limits)


# ---------------------------------------------------------------------------------------------
# URLs: SSRF, remote errors
# ---------------------------------------------------------------------------------------------


class RecordingTransport(httpx.AsyncBaseTransport):
    """Never touches the network; records requests and answers from `respond(request)`."""

    def __init__(self, respond=None):
        self.requests: list[httpx.Request] = []
        self.respond = respond or (lambda request: httpx.Response(200, content=b""))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.respond(request)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/a.png",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/a.png",
        "http://192.168.1.1/a.png",
        "http://172.16.0.1/a.png",
        "http://[::1]/a.png",
        "http://[::ffff:127.0.0.1]/a.png",
        "http://0.0.0.0/a.png",
        "http://224.0.0.1/a.png",
        "http://100.64.0.1/a.png",
        "https://localhost/a.png",
    ],
)
def test_private_loopback_link_local_addresses_are_refused_without_a_request(url):
    transport = RecordingTransport()

    async def go():
        async with httpx.AsyncClient(transport=transport) as client:
            loader = MediaLoader(LIMITS, http_client=client)
            try:
                with pytest.raises(MediaError, match="not allowed"):
                    await loader.load_image(url)
            finally:
                await loader.aclose()

    asyncio.run(go())
    assert transport.requests == []


def test_loopback_server_sees_no_request_unless_allowed(small_png):
    with LocalServer({"/a.png": (200, {"Content-Type": "image/png"}, small_png)}) as server:
        with pytest.raises(MediaError, match="not allowed"):
            load(server.url("/a.png"))
        assert server.requests == []
        allowed = MediaLimits(allowed_remote_hosts=("127.0.0.1",))
        assert load(server.url("/a.png"), allowed).size == (8, 8)
        cidr = MediaLimits(allowed_remote_hosts=("127.0.0.0/8",))
        assert load(server.url("/a.png"), cidr).size == (8, 8)
        assert [path for path, _ in server.requests] == ["/a.png", "/a.png"]


def test_allowed_hostname_is_fetched_from_its_checked_address_with_its_host_header(small_png):
    with LocalServer({"/a.png": (200, {}, small_png)}) as server:
        limits = MediaLimits(allowed_remote_hosts=("localhost",))
        assert load(f"http://localhost:{server.port}/a.png", limits).size == (8, 8)
        assert server.requests == [("/a.png", f"localhost:{server.port}")]


def test_redirect_to_private_address_is_refused_before_the_second_request():
    def respond(request: httpx.Request) -> httpx.Response:
        return httpx.Response(302, headers={"Location": "http://169.254.169.254/latest/meta-data/"})

    transport = RecordingTransport(respond)
    limits = MediaLimits(allowed_remote_hosts=("127.0.0.1",))

    async def go():
        async with httpx.AsyncClient(transport=transport) as client:
            loader = MediaLoader(limits, http_client=client)
            with pytest.raises(MediaError, match="not allowed"):
                await loader.load_image("http://127.0.0.1/start.png")
            await loader.aclose()

    asyncio.run(go())
    assert [str(r.url) for r in transport.requests] == ["http://127.0.0.1/start.png"]


def test_redirects_are_followed_a_few_times(small_png):
    routes = {
        "/a.png": (200, {}, small_png),
        "/hop": (302, {"Location": "/a.png"}, b""),
        "/loop": (302, {"Location": "/loop"}, b""),
    }
    limits = MediaLimits(allowed_remote_hosts=("127.0.0.1",))
    with LocalServer(routes) as server:
        assert load(server.url("/hop"), limits).size == (8, 8)
        with pytest.raises(MediaError, match="redirects more than"):
            load(server.url("/loop"), limits)
        assert len([p for p, _ in server.requests if p == "/loop"]) == 4


def test_remote_url_answering_404_is_rejected_naming_the_url():
    limits = MediaLimits(allowed_remote_hosts=("127.0.0.1",))
    with LocalServer({}) as server:
        url = server.url("/missing.png")
        with pytest.raises(MediaError, match="HTTP 404") as info:
            load(url, limits)
        assert url in str(info.value)


def test_remote_url_not_answering_within_timeout_is_rejected_naming_the_url():
    limits = MediaLimits(allowed_remote_hosts=("127.0.0.1",), fetch_timeout_seconds=0.3)
    with LocalServer({"/slow.png": slow_route(2.0)}) as server:
        url = server.url("/slow.png")
        with pytest.raises(MediaError, match="did not finish within 0.3 s") as info:
            load(url, limits)
        assert url in str(info.value)


def test_connection_refused_is_rejected_naming_the_url():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/a.png"
    with pytest.raises(MediaError, match="failed") as info:
        load(url, MediaLimits(allowed_remote_hosts=("127.0.0.1",)))
    assert url in str(info.value)


def test_remote_body_over_byte_limit_is_rejected_with_and_without_content_length():
    body = b"x" * 5000
    routes = {"/sized": (200, {}, body), "/unsized": unsized_route(body)}
    limits = MediaLimits(allowed_remote_hosts=("127.0.0.1",), max_media_bytes=4096)
    with LocalServer(routes) as server:
        with pytest.raises(MediaError, match="more than the limit"):
            fetch(server.url("/sized"), limits)
        with pytest.raises(MediaError, match="larger than the limit"):
            fetch(server.url("/unsized"), limits)
        ok = MediaLimits(allowed_remote_hosts=("127.0.0.1",))
        assert fetch(server.url("/unsized"), ok) == body


def test_error_messages_truncate_data_urls():
    url = "data:image/png;base64," + base64.b64encode(b"not an image " * 200).decode()
    with pytest.raises(MediaError) as info:
        load(url)
    assert len(str(info.value)) < 200 and url not in str(info.value)


def test_decoding_runs_in_the_loader_threads(monkeypatch, small_png):
    import server.media as media

    seen = []
    real = media.decode_image

    def spy(data, limits):
        seen.append(threading.current_thread().name)
        return real(data, limits)

    monkeypatch.setattr(media, "decode_image", spy)
    load(data_url(small_png))
    assert len(seen) == 1 and seen[0].startswith("media")
    assert seen[0] != threading.main_thread().name


# ---------------------------------------------------------------------------------------------
# Video
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clip_60() -> bytes:
    """4 s at 15 fps (60 frames), x264's default GOP."""
    return encode_h264(60, 15)


def expected_centres(n_source: int, count: int) -> list[int]:
    """Frame indices at the centres of `count` equal segments of a constant-rate clip."""
    return sorted({int((i + 0.5) * n_source / count) for i in range(count)})


@pytest.mark.parametrize(
    "bad", [b"", b"\x00", np.random.default_rng(3).bytes(20000), b"This is a text file.\n" * 50]
)
def test_random_bytes_empty_file_text_file_are_not_videos(bad):
    with pytest.raises(MediaError):
        sample_video(bad)


def test_audio_file_and_playlist_are_not_videos():
    import wave

    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(8000)
        w.writeframes(b"\x00\x01" * 8000)
    playlist = b"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n"
    for data in (buf.getvalue(), playlist):
        with pytest.raises(MediaError, match="not a video"):
            sample_video(data)


def test_image_is_not_a_video(small_png):
    with pytest.raises(MediaError, match="not a video"):
        sample_video(small_png)


@pytest.mark.parametrize("num_frames", [0, -1, 65, True, 2.5])
def test_num_frames_zero_negative_or_above_maximum_is_rejected(clip_60, num_frames):
    with pytest.raises(MediaError, match="num_frames"):
        sample_video(clip_60, num_frames=num_frames)
    with pytest.raises(MediaError, match="num_frames"):
        load_video(data_url(clip_60, "video/mp4"), num_frames=num_frames)


def test_num_frames_maximum_is_configurable(clip_60):
    with pytest.raises(MediaError, match="between 1 and 8"):
        sample_video(clip_60, num_frames=9, limits=MediaLimits(max_frames=8))
    assert len(sample_video(clip_60, num_frames=8, limits=MediaLimits(max_frames=8)).frames) == 8


@pytest.mark.parametrize("fps", [0, -1.0, float("nan"), float("inf")])
def test_bad_fps_is_rejected(clip_60, fps):
    with pytest.raises(MediaError, match="fps"):
        sample_video(clip_60, fps=fps)
    with pytest.raises(MediaError, match="fps"):
        load_video("http://10.0.0.1/never-fetched.mp4", fps=fps)  # checked before any fetch


def test_frames_are_uniform_over_the_duration(clip_60):
    video = sample_video(clip_60, num_frames=4)
    assert video.frames.shape == (4, 48, 64, 3) and video.frames.dtype == np.uint8
    assert video.frame_indices == expected_centres(60, 4) == [7, 22, 37, 52]
    assert [frame_index(f) for f in video.frames] == video.frame_indices
    assert video.timestamps == pytest.approx([k / 15 for k in video.frame_indices])
    assert video.duration == pytest.approx(4.0)
    assert video.num_source_frames == 60 and video.source_fps == pytest.approx(15.0)


@pytest.mark.parametrize("gop", [None, 1, 5, 12])
@pytest.mark.parametrize("container", ["mp4", "matroska", "mpegts"])
@pytest.mark.parametrize("num_frames", [3, 16])
def test_gop_aware_sampling_equals_decoding_every_frame(gop, container, num_frames):
    data = encode_h264(45, 15, gop=gop, container=container)
    reference = decode_all(data)
    video = sample_video(data, num_frames=num_frames)
    assert video.frame_indices == expected_centres(45, num_frames)
    for frame, index in zip(video.frames, video.frame_indices):
        assert np.array_equal(frame, reference[index])


@pytest.mark.parametrize("container", ["mp4", "matroska", "mpegts", "avi"])
def test_sampler_seeks_across_gops_instead_of_decoding_everything(container):
    data = encode_h264(60, 15, gop=10, container=container)
    video = sample_video(data, num_frames=2)
    assert video.frame_indices == [15, 45]
    assert video.decoded_frames <= 2 * 10 + 4  # two partial GOPs (+ decoder delay), not 60


def test_sampler_skips_unwanted_b_frames_and_stays_exact():
    data = encode_h264(60, 15)  # one GOP, B-frames
    reference = decode_all(data)
    video = sample_video(data, num_frames=4)
    assert video.frame_indices == [7, 22, 37, 52]
    assert video.decoded_frames < 52  # non-reference frames nobody wants are not decoded
    assert all(np.array_equal(f, reference[i]) for f, i in zip(video.frames, video.frame_indices))


def test_fps_sampling_and_its_cap(clip_60):
    video = sample_video(clip_60, fps=2)
    assert len(video.frames) == 8  # 4 s * 2 fps
    assert np.allclose(np.diff(video.timestamps), 0.5, atol=1 / 15 + 1e-6)
    capped = sample_video(clip_60, num_frames=10, fps=30, limits=MediaLimits(max_frames=10))
    assert len(capped.frames) == 10 and capped.frame_indices == expected_centres(60, 10)


def test_num_frames_caps_fps_sampling_spread_over_the_whole_clip(clip_60):
    video = sample_video(clip_60, num_frames=4, fps=5)
    assert len(video.frames) == 4
    # spread over the whole duration, not the first four fifths of a second
    assert video.timestamps[-1] > 0.7 * video.duration


def test_2_second_clip_at_1_fps_with_16_frames_gives_the_frames_it_has():
    data = encode_h264(2, 1)
    video = sample_video(data, num_frames=16)
    assert video.frames.shape[0] == 2
    assert video.frame_indices == [0, 1] and video.timestamps == pytest.approx([0.0, 1.0])
    assert [frame_index(f) for f in video.frames] == [0, 1]
    assert video.duration == pytest.approx(2.0)


def test_variable_frame_rate_clip_gives_requested_frames_over_real_duration():
    # 30 frames 10 ms apart, then 10 frames 200 ms apart: 2.3 s, most frames in the first 0.3 s.
    pts = [k * 10 for k in range(30)] + [300 + k * 200 for k in range(10)]
    data = encode_h264(40, 25, pts=pts, time_base=Fraction(1, 1000))
    video = sample_video(data, num_frames=8)
    assert len(video.frames) == 8
    assert [frame_index(f) for f in video.frames] == video.frame_indices
    # Spread in time, not in frame count: most samples come from the slow second part.
    assert sum(t >= 0.3 for t in video.timestamps) >= 6
    assert video.timestamps[-1] > 1.8
    segment = video.duration / 8
    for i, t in enumerate(video.timestamps):
        assert (i + 0.5) * segment - 0.2 - 1e-6 <= t <= (i + 0.5) * segment + 1e-6


def test_vfr_clip_with_long_held_frames_still_gives_requested_distinct_frames():
    # 8 frames, some shown for long: several segment centres fall on the same held frame.
    pts = [0, 100, 150, 700, 800, 1500, 1600, 2000]
    data = encode_h264(8, 25, pts=pts, time_base=Fraction(1, 1000))
    for count in (4, 6, 8):
        video = sample_video(data, num_frames=count)
        assert len(video.frames) == count
        assert len(set(video.frame_indices)) == count
        assert video.frame_indices == sorted(video.frame_indices)
        assert [frame_index(f) for f in video.frames] == video.frame_indices
    # fewer frames than requested: each frame once
    assert sample_video(data, num_frames=12).frame_indices == list(range(8))


def test_clip_whose_container_states_more_frames_than_it_holds():
    full = encode_h264(60, 15, gop=10, faststart=True)  # index first, so a cut file still opens
    cut = full[: len(full) // 2]
    import av

    with av.open(io.BytesIO(cut)) as container:
        assert container.streams.video[0].frames == 60  # what the header claims
    video = sample_video(cut, num_frames=6)
    assert len(video.frames) == 6
    held = video.num_source_frames
    assert 10 < held < 40
    assert video.duration == pytest.approx(held / 15, abs=0.15)
    assert [frame_index(f) for f in video.frames] == video.frame_indices
    assert video.frame_indices[-1] >= held * 0.7 and video.frame_indices[0] <= held * 0.3


def test_h264_clip_with_corrupted_middle_packets_samples_the_frames_that_decode():
    data = encode_h264(60, 15, gop=10)
    broken = corrupt_packets(data, 20, 35)
    video = sample_video(broken, num_frames=8)
    assert 4 <= len(video.frames) <= 8
    assert video.timestamps == sorted(video.timestamps)
    assert len(set(video.frame_indices)) == len(video.frame_indices)
    # Frames before the damage are exact.
    reference = decode_all(data)
    early = [(f, i) for f, i in zip(video.frames, video.frame_indices) if i < 18]
    assert early and all(np.array_equal(f, reference[i]) for f, i in early)


def test_h264_clip_with_every_packet_corrupted_is_rejected():
    data = encode_h264(30, 15, gop=10)
    broken = corrupt_packets(data, 0, len(packet_spans(data)))
    with pytest.raises(MediaError, match="no frame"):
        sample_video(broken, num_frames=4)


@pytest.mark.parametrize("degrees,k", [(90, 1), (-90, 3), (180, 2)])
def test_rotation_metadata_is_applied(degrees, k):
    data = encode_h264(4, 4, rotation=degrees, marker=True)
    video = sample_video(data, num_frames=2)
    stored = decode_all(data)[video.frame_indices[0]]
    expected = np.rot90(stored, k)
    assert video.frames.shape[1:] == expected.shape
    assert np.array_equal(video.frames[0], expected)
    red = np.argwhere((video.frames[0][..., 0] > 200) & (video.frames[0][..., 1] < 60))
    h, w = video.frames.shape[1:3]
    corner = (red[:, 0].mean() > h / 2, red[:, 1].mean() > w / 2)
    # The stored top-left marker ends where a counter-clockwise rotation puts it.
    assert corner == {90: (True, False), -90: (False, True), 180: (True, True)}[degrees]


def test_video_frame_pixel_limit(clip_60):
    with pytest.raises(MediaError, match="64x48 pixels"):
        sample_video(clip_60, limits=MediaLimits(max_image_pixels=64 * 48 - 1))


def test_video_from_path_file_url_and_http(tmp_path, clip_60):
    path = tmp_path / "clip.mp4"
    path.write_bytes(clip_60)
    assert sample_video(path, num_frames=4).frame_indices == [7, 22, 37, 52]
    via_file = load_video(path.as_uri(), MediaLimits(allowed_media_dir=tmp_path), num_frames=4)
    assert via_file.frame_indices == [7, 22, 37, 52]
    with LocalServer({"/clip.mp4": (200, {"Content-Type": "video/mp4"}, clip_60)}) as server:
        limits = MediaLimits(allowed_remote_hosts=("127.0.0.1",))
        via_http = load_video(server.url("/clip.mp4"), limits, num_frames=4)
    assert np.array_equal(via_http.frames, via_file.frames)


def test_video_error_names_the_url():
    url = data_url(b"This is a text file.\n" * 10, "video/mp4")
    with pytest.raises(MediaError, match="not a video") as info:
        load_video(url)
    assert str(info.value).startswith("data:video/mp4;base64,")


def test_an_image_a_video_and_a_scene_in_one_message_load_in_order(small_png, clip_60):
    views = [png_bytes(Image.new("RGB", (16, 12), (c, c, c))) for c in (10, 20, 30)]

    async def go():
        loader = MediaLoader(LIMITS)
        try:
            return await asyncio.gather(
                loader.load_image(data_url(small_png)),
                loader.load_video(data_url(clip_60, "video/mp4"), num_frames=4),
                *(loader.load_image(data_url(v)) for v in views),
            )
        finally:
            await loader.aclose()

    image, video, *scene = asyncio.run(go())
    assert image.size == (8, 8)
    assert isinstance(video, VideoFrames) and len(video.frames) == 4
    assert [rgb(v)[0] for v in scene] == [10, 20, 30]
