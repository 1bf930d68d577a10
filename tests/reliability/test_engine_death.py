"""Killing the engine core mid-stream: the in-flight stream ends with a clean error, new requests get
503 ``engine_dead`` (not "retry shortly"), /health fails, and the process exits non-zero within 10 s,
leaving no shared-memory segments behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading

import httpx
import psutil

from harness.servers import start_tiny_server


def _shm() -> set[str]:
    return set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()


def _engine_core(pid: int) -> psutil.Process:
    for proc in psutil.Process(pid).children(recursive=True):
        if "EngineCore" in " ".join([proc.name(), *proc.cmdline()]):
            return proc
    raise AssertionError("no EngineCore process under the server")


def test_killed_engine_ends_the_process(tmp_path, tiny_checkpoint_path):
    shm_before = _shm()
    server = start_tiny_server(tmp_path / "server.log", tiny_checkpoint_path, "--drain-timeout-seconds", "30")
    try:
        events: list[dict | str] = []
        first_token = threading.Event()
        stream_done = threading.Event()

        def stream() -> None:
            body = {
                "messages": [{"role": "user", "content": "Tell a very long story."}],
                "max_tokens": 6000,
                "temperature": 0,
                "stream": True,
            }
            try:
                with httpx.stream("POST", server.v1 + "/chat/completions", json=body, timeout=60) as resp:
                    events.append(f"status {resp.status_code}")
                    for line in resp.iter_lines():
                        if line.startswith("data: "):
                            events.append(line[6:] if line[6:] == "[DONE]" else json.loads(line[6:]))
                            if isinstance(events[-1], dict) and events[-1].get("choices"):
                                first_token.set()
            except httpx.HTTPError as exc:
                events.append(f"transport {type(exc).__name__}")
            finally:
                first_token.set()
                stream_done.set()

        thread = threading.Thread(target=stream, daemon=True)
        thread.start()
        assert first_token.wait(120), server.log_tail()
        core = _engine_core(server.process.pid)
        core.send_signal(signal.SIGKILL)

        assert stream_done.wait(30), "the in-flight stream never ended"
        errors = [e for e in events if isinstance(e, dict) and "error" in e]
        assert errors, events[-3:]
        assert events[-1] == "[DONE]"

        statuses = []
        with httpx.Client(timeout=2) as client:
            try:
                r = client.post(
                    server.v1 + "/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]}
                )
                statuses.append(r.status_code)
                if r.status_code == 503:
                    assert r.json()["error"]["code"] == "engine_dead", r.text
                    assert "retry shortly" not in r.text
                h = client.get(server.base_url + "/health")
                assert h.status_code == 503
            except httpx.TransportError:
                pass  # already gone: as good
        try:
            code = server.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the server did not exit within 10 s:\n{server.log_tail()}") from None
        assert code != 0
        assert "engine failure" in server.log_text()
    finally:
        server.stop(timeout=10)
    leftover = {name for name in _shm() - shm_before if not name.startswith("sem.")}
    assert not leftover, leftover
