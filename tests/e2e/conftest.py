"""The e2e package: ONE live ``interleave-serve`` (real vLLM engine, tiny model) for all e2e tests.

The server (:func:`harness.servers.start_server`, a subprocess on a free port) is a package-scoped
fixture: started when the first e2e test needs it and stopped (SIGTERM, graceful drain) when the last
e2e test is done, so its engine never overlaps the adapter tests' engine. The SDK's live tests
(``clients/python/tests/test_live.py``, run through ``test_sdk_live.py``) use the same server.
"""

from __future__ import annotations

import http.server
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from harness.servers import (
    TINY_ENGINE_FLAGS,
    RunningServer,
    clean_environment,
    free_port,
    interleave_serve_command,
    start_server,
)

STARTUP_TIMEOUT_S = 600.0
MAX_MODEL_LEN = 8192
REMOTE_HOST_ALLOWED = "localhost"  # the test's own HTTP server; 127.0.0.1 itself stays refused


@dataclass
class LiveServer:
    """The e2e server: the :class:`~harness.servers.RunningServer` and what the tests need to know.

    Attributes:
        running: the server process.
        media_dir: the folder ``--allowed-media-dir`` allows (file URLs).
        checkpoint: the tiny checkpoint it serves.
        ready_statuses: every /ready status seen while waiting for the engine (503 while loading, then 200).
    """

    running: RunningServer
    media_dir: Path
    checkpoint: Path
    ready_statuses: list[int] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return self.running.base_url

    @property
    def v1(self) -> str:
        return self.running.v1

    def log_tail(self, n: int = 60) -> str:
        return self.running.log_tail(n)


@pytest.fixture(scope="package")
def live_server(tmp_path_factory, tiny_checkpoint_path):
    """Start the server once for the e2e package (about 30-90 s on 2 cores), wait for /ready, and
    stop it after the package's last test."""
    media_dir = tmp_path_factory.mktemp("allowed-media")
    log_path = tmp_path_factory.mktemp("server-log") / "server.log"
    port = free_port()
    cmd = interleave_serve_command(
        port,
        *TINY_ENGINE_FLAGS,
        "--max-model-len", str(MAX_MODEL_LEN),
        "--max-request-bytes", str(8 * 2**20),
        "--allowed-media-dir", str(media_dir),
        "--allowed-remote-hosts", REMOTE_HOST_ALLOWED,
        "--fetch-timeout-seconds", "2",
        "--default-max-tokens", "16",
        "--drain-timeout-seconds", "10",
    )  # fmt: skip
    statuses: list[int] = []
    env = clean_environment(
        INTERLEAVE_CACHE_DIR=str(tiny_checkpoint_path.parent)
    )  # the default model, prebuilt
    try:
        running = start_server(
            cmd,
            ready_url=f"http://127.0.0.1:{port}/ready",
            log_path=log_path,
            env=env,
            timeout=STARTUP_TIMEOUT_S,
            ready_statuses=statuses,
        )
    except RuntimeError as exc:
        pytest.fail(f"interleave-serve did not become ready: {exc}")
    server = LiveServer(running, media_dir, tiny_checkpoint_path, statuses)
    yield server
    running.stop(timeout=60, group=False)  # SIGTERM to the server: it drains and stops its engine


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On a failed test that used the live server, attach the tail of its log to the report."""
    outcome = yield
    report = outcome.get_result()
    server = getattr(item, "funcargs", {}).get("live_server")
    if report.failed and isinstance(server, LiveServer):
        report.sections.append(("interleave-serve log (tail)", server.log_tail(80)))


@pytest.fixture(scope="package")
def client(live_server) -> httpx.Client:
    with httpx.Client(base_url=live_server.base_url, timeout=120) as c:
        yield c


@pytest.fixture(scope="package")
def model_name(client) -> str:
    return client.get("/v1/models").json()["data"][0]["id"]


class _Handler(http.server.BaseHTTPRequestHandler):
    png: bytes = b""
    files: dict[str, tuple[str, bytes]] = {}
    """More paths a test serves: path -> (content type, body); see the `serve_media` fixture."""

    def do_GET(self):
        if self.path in self.files:
            content_type, body = self.files[self.path]
            self.send_response(200)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if self.path.startswith("/slow"):
            time.sleep(6)
            self.send_response(200)
            self.end_headers()
            return
        if self.path.startswith("/image.png"):
            self.send_response(200)
            self.send_header("content-type", "image/png")
            self.send_header("content-length", str(len(self.png)))
            self.end_headers()
            self.wfile.write(self.png)
            return
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="session")
def media_http_server():
    """A local HTTP server for remote-URL cases: /image.png (200), /missing (404), /slow (no answer in
    the server's 2 s fetch timeout). Reached as http://localhost:<port>/ (allowed host)."""
    from harness.media import png

    _Handler.png = png(24, 24)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://{REMOTE_HOST_ALLOWED}:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="session")
def serve_media(media_http_server):
    """`serve_media(path, body, content_type="video/mp4") -> url`: serve `body` at `path` (e.g.
    "/clip.mp4") from the `media_http_server`; returns its http://localhost:<port> URL."""

    def serve(path: str, body: bytes, content_type: str = "video/mp4") -> str:
        _Handler.files[path] = (content_type, body)
        return media_http_server + path

    return serve
