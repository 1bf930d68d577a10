"""Graceful shutdown of the real uvicorn server (a subprocess on the fake engine, no vLLM): SIGTERM ->
/ready 503 and new requests 503 while the in-flight stream finishes, then the process exits."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from harness.servers import free_port, start_server

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]

SCRIPT = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {here!r})
    from prometheus_client import CollectorRegistry
    from server_fakes import FakeEngine, FakeMediaLoader, make_builder
    from server.app import create_app
    from server.cli import serve
    from server.metrics import ServerMetrics
    from server.settings import ServerSettings

    settings = ServerSettings(port={port}, drain_timeout_seconds=20, log_level="warning")
    engine = FakeEngine(token_delay=0.05)
    serve(lambda on_fatal: create_app(settings, model_loader=lambda s: (engine, make_builder()),
          media_loader_factory=lambda s, image_size: FakeMediaLoader(), metrics=ServerMetrics(CollectorRegistry()),
          on_fatal=on_fatal), settings)
    """
)


def test_sigterm_drains_in_flight_requests(tmp_path):
    port = free_port()
    server = start_server(
        [sys.executable, "-c", SCRIPT.format(here=str(HERE), port=port)],
        ready_url=f"http://127.0.0.1:{port}/ready",
        log_path=tmp_path / "server.log",
        timeout=120,
    )
    base = server.base_url
    try:
        events: list = []
        first = threading.Event()

        def stream() -> None:
            body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 30, "stream": True}
            with httpx.stream("POST", base + "/v1/chat/completions", json=body, timeout=30) as r:
                for line in r.iter_lines():
                    if line.startswith("data: "):
                        events.append(line[6:])
                        first.set()

        t = threading.Thread(target=stream)
        t.start()
        assert first.wait(30)
        server.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        ready = httpx.get(base + "/ready", timeout=2)
        while ready.status_code != 503 and time.monotonic() < deadline:
            ready = httpx.get(base + "/ready", timeout=2)
        assert ready.status_code == 503 and ready.json()["status"] == "draining"
        refused = httpx.post(
            base + "/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}]}, timeout=5
        )
        assert refused.status_code == 503 and refused.json()["error"]["type"] == "service_unavailable"
        t.join(30)
        assert events[-1] == "[DONE]"
        finishes = [
            json.loads(e)["choices"][0]["finish_reason"] for e in events[:-1] if json.loads(e)["choices"]
        ]
        assert finishes[-1] == "length"  # the in-flight request ran to its end
        assert server.process.wait(timeout=30) == 0  # a drained shutdown exits 0, not by the signal
        assert "Traceback" not in server.log_text()
    finally:
        server.stop(timeout=5)


@pytest.mark.parametrize(
    "module", ["server.app", "server.cli", "server.routes", "server.chat", "server.prompt"]
)
def test_server_modules_do_not_import_vllm(module):
    code = f"import sys, {module}; bad = [m for m in sys.modules if m == 'vllm' or m.startswith('vllm.')]; print(bad); sys.exit(1 if bad else 0)"
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ},
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_keep_alive_timeout_reaches_uvicorn(monkeypatch):
    """`--keep-alive-timeout-seconds` is uvicorn's `timeout_keep_alive` (75 s by default, above the
    60 s idle timeout of nginx's upstream keepalive and of an AWS ALB; uvicorn's own is 5 s)."""
    from server import cli
    from server.settings import ServerSettings

    configs = []

    class Recorder:
        def __init__(self, config, state, drain_timeout):
            configs.append(config)

        def run(self, sockets=None):
            return None

    fake_app = SimpleNamespace(state=SimpleNamespace(interleave=None))
    monkeypatch.setattr(cli, "_make_server_class", lambda: Recorder)
    assert ServerSettings().keep_alive_timeout_seconds == 75
    for seconds in (75, 620):
        assert cli.serve(lambda on_fatal: fake_app, ServerSettings(keep_alive_timeout_seconds=seconds)) == 0
        assert configs[-1].timeout_keep_alive == seconds
