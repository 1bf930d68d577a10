"""server.media.fetch: data: URL forms, schemes, file:// below one directory, SSRF policy, remote errors.

HTTP goes only to a server on 127.0.0.1 or to an httpx transport that records requests (for
addresses that must never be contacted).
"""

from __future__ import annotations

import asyncio
import base64
import socket
import urllib.parse

import httpx
import pytest
from media_support import (
    LIMITS,
    LocalServer,
    fetch,
    load,
    rgb,
    slow_route,
    unsized_route,
)

from harness.media import data_url
from server.media import MediaError, MediaLimits, MediaLoader


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
