"""The e2e session: ONE live ``interleave-serve`` (real vLLM engine, tiny model) for all e2e tests.

The server is a subprocess on a free port, started on first use and stopped (SIGTERM, graceful
drain) after the last e2e test, so its engine never overlaps the adapter tests' engine. The SDK's live
tests (``clients/python/tests/test_live.py``, run through ``test_sdk_live.py``) use the same server via
``INTERLEAVE_TEST_BASE_URL``, which is set here at import time because that module reads it when it is
collected.
"""

from __future__ import annotations

import http.server
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]

STARTUP_TIMEOUT_S = 600.0
MAX_MODEL_LEN = 8192
REMOTE_HOST_ALLOWED = "localhost"  # the test's own HTTP server; 127.0.0.1 itself stays refused


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PORT = _free_port()
BASE_URL = f"http://127.0.0.1:{PORT}"
os.environ["INTERLEAVE_TEST_BASE_URL"] = BASE_URL + "/v1"


@dataclass
class LiveServer:
    base_url: str
    process: subprocess.Popen
    log_path: Path
    media_dir: Path
    checkpoint: Path
    ready_statuses: list[int]
    """Every /ready status seen while waiting for the engine (503 while loading, then 200)."""

    @property
    def v1(self) -> str:
        return self.base_url + "/v1"

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"


_server: LiveServer | None = None


def _stop(server: LiveServer) -> None:
    proc = server.process
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            # our own process group (start_new_session): the server and its engine processes
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


@pytest.fixture(scope="session")
def live_server(tmp_path_factory, tiny_checkpoint_path) -> LiveServer:
    """Start the server once (about 30-90 s on 2 cores) and wait for /ready."""
    global _server
    if _server is not None:
        return _server
    media_dir = tmp_path_factory.mktemp("allowed-media")
    log_path = tmp_path_factory.mktemp("server-log") / "server.log"
    env = dict(os.environ)
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    env["INTERLEAVE_CACHE_DIR"] = str(tiny_checkpoint_path.parent)  # the default model, prebuilt
    for var in [v for v in env if v.startswith("INTERLEAVE_") and v not in ("INTERLEAVE_CACHE_DIR",)]:
        env.pop(var)
    cmd = [
        sys.executable, "-m", "server.cli",
        "--host", "127.0.0.1",
        "--port", str(PORT),
        "--dtype", "float32",
        "--max-model-len", str(MAX_MODEL_LEN),
        "--gpu-memory-utilization", "0.05",
        "--enforce-eager",
        "--max-request-bytes", str(8 * 2**20),
        "--allowed-media-dir", str(media_dir),
        "--allowed-remote-hosts", REMOTE_HOST_ALLOWED,
        "--fetch-timeout-seconds", "2",
        "--default-max-tokens", "16",
        "--drain-timeout-seconds", "10",
    ]
    log = open(log_path, "wb")
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    server = LiveServer(BASE_URL, proc, log_path, media_dir, tiny_checkpoint_path, [])
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    ready = False
    with httpx.Client(timeout=5) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            try:
                status = client.get(BASE_URL + "/ready").status_code
                server.ready_statuses.append(status)
                if status == 200:
                    ready = True
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1.0)
    if not ready:
        _stop(server)
        pytest.fail(f"interleave-serve did not become ready (exit {proc.poll()}):\n{server.log_tail()}")
    _server = server
    return server


def pytest_runtest_teardown(item, nextitem):
    """Stop the server after the last e2e test so no engine outlives the e2e tests."""
    global _server
    if _server is None or HERE not in Path(str(item.fspath)).resolve().parents:
        return
    if nextitem is None or HERE not in Path(str(nextitem.fspath)).resolve().parents:
        _stop(_server)
        _server = None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On a failed e2e test, attach the tail of the server log to the report."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and _server is not None and HERE in Path(str(item.fspath)).resolve().parents:
        report.sections.append(("interleave-serve log (tail)", _server.log_tail(80)))


def pytest_sessionfinish(session, exitstatus):
    global _server
    if _server is not None:
        _stop(_server)
        _server = None


@pytest.fixture(scope="session")
def client(live_server) -> httpx.Client:
    with httpx.Client(base_url=live_server.base_url, timeout=120) as c:
        yield c


@pytest.fixture(scope="session")
def model_name(client) -> str:
    return client.get("/v1/models").json()["data"][0]["id"]


class _Handler(http.server.BaseHTTPRequestHandler):
    png: bytes = b""
    files: dict[str, tuple[str, bytes]] = {}
    """More paths a test serves: path -> (content type, body); see the `serve_media` fixture."""

    def do_GET(self):  # noqa: N802
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
