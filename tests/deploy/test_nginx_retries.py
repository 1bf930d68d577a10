"""The retry rules of ``docker/nginx.conf.template`` against stub upstreams (no engine, seconds).

Two stub replicas behind a real nginx running the rendered template. A POST goes to the next replica
when the first one refused the connection, reset it before answering, or answered 503 (draining or
loading: the request never ran); it is NOT resent when the first replica timed out after receiving
it (it may still be generating) or answered 500. The stub records every request it received, by the
``X-Request-Id`` nginx forwards.
"""

from __future__ import annotations

import http.server
import json
import re
import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from harness.servers import free_port, start_server
from server.settings import ServerSettings
from tests.deploy.nginx_lb import ensure_nginx, nginx_command, render_template, write_main_conf

READ_TIMEOUT_S = 1  # the test's proxy_read_timeout (the template's 900 s, shortened to see a timeout)


class _Stub(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, name: str, mode: str) -> None:
        self.name, self.mode = name, mode
        self.received: list[str] = []
        self.release = threading.Event()
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Stub

    def log_message(self, *args) -> None:  # quiet
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.received.append(self.headers.get("X-Request-Id", ""))
        mode = self.server.mode
        if mode == "reset":  # a replica killed before it answered: RST, no response header
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True
            return
        if mode == "hang":  # a replica that got the request and is still generating
            self.server.release.wait(READ_TIMEOUT_S + 5)
        status = {"ok": 200, "hang": 200, "503": 503, "500": 500}[mode]
        body = json.dumps({"served_by": self.server.name}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if status == 503:
            self.send_header("Retry-After", "1")
        self.end_headers()
        self.wfile.write(body)


@contextmanager
def _stub(name: str, mode: str) -> Iterator[_Stub]:
    server = _Stub(name, mode)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()


@contextmanager
def _nginx(tmp_path: Path, upstreams: list[str]) -> Iterator[str]:
    nginx, envsubst = ensure_nginx()
    port = free_port()
    rendered = render_template(
        envsubst,
        {
            "NGINX_LISTEN": f"127.0.0.1:{port}",
            "NGINX_UPSTREAM_SERVERS": " ".join(
                f"server {u} max_fails=1 fail_timeout=10s;" for u in upstreams
            ),
            "INTERLEAVE_MAX_REQUEST_BYTES": str(ServerSettings.model_fields["max_request_bytes"].default),
        },
    )
    rendered, n = re.subn(r"proxy_read_timeout \d+s;", f"proxy_read_timeout {READ_TIMEOUT_S}s;", rendered)
    assert n == 1
    conf = write_main_conf(tmp_path / "nginx", rendered)
    server = start_server(
        nginx_command(nginx, conf),
        ready_url=f"http://127.0.0.1:{port}/nginx-health",
        log_path=tmp_path / "nginx.log",
        timeout=30,
    )
    try:
        yield server.base_url
    finally:
        server.stop(timeout=10)


def _post_until_first_hits(url: str, first: _Stub, limit: int = 6) -> list[tuple[str, httpx.Response]]:
    """POST one at a time until a request reached ``first`` (nginx alternates between idle
    replicas); returns every (request id, response)."""
    sent = []
    with httpx.Client(timeout=READ_TIMEOUT_S + 10) as client:
        for i in range(limit):
            rid = f"req-{i}-{time.time_ns()}"
            resp = client.post(url + "/v1/chat/completions", json={"k": i}, headers={"x-request-id": rid})
            sent.append((rid, resp))
            if rid in first.received:
                return sent
    raise AssertionError(f"no request reached {first.name} in {limit} tries")


@pytest.mark.parametrize("mode", ["503", "reset"])
def test_a_post_that_did_not_run_goes_to_the_next_replica(tmp_path: Path, mode: str) -> None:
    with _stub("first", mode) as first, _stub("second", "ok") as second:
        upstreams = [f"127.0.0.1:{first.server_port}", f"127.0.0.1:{second.server_port}"]
        with _nginx(tmp_path, upstreams) as url:
            sent = _post_until_first_hits(url, first)
    for rid, resp in sent:
        assert resp.status_code == 200 and resp.json() == {"served_by": "second"}, (mode, resp.text)
        assert rid in second.received
    assert len(first.received) == 1  # then marked failed for fail_timeout


def test_a_refused_connection_goes_to_the_next_replica(tmp_path: Path) -> None:
    closed = f"127.0.0.1:{free_port()}"  # nothing listens there: a stopped replica
    with _stub("second", "ok") as second:
        with _nginx(tmp_path, [closed, f"127.0.0.1:{second.server_port}"]) as url:
            with httpx.Client(timeout=10) as client:
                statuses = [
                    client.post(url + "/v1/chat/completions", json={"k": i}).status_code for i in range(4)
                ]
    assert statuses == [200] * 4 and len(second.received) == 4


@pytest.mark.parametrize("mode, status", [("hang", 504), ("500", 500)])
def test_a_post_that_may_have_run_is_not_resent(tmp_path: Path, mode: str, status: int) -> None:
    with _stub("first", mode) as first, _stub("second", "ok") as second:
        upstreams = [f"127.0.0.1:{first.server_port}", f"127.0.0.1:{second.server_port}"]
        with _nginx(tmp_path, upstreams) as url:
            sent = _post_until_first_hits(url, first)
    rid, resp = sent[-1]  # the one that reached `first`
    assert resp.status_code == status, resp.text
    assert rid not in second.received  # never sent a second time
    for other_rid, other in sent[:-1]:
        assert other.status_code == 200 and other_rid in second.received
