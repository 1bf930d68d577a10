"""The drain survives real signals: SIGTERM to the server process, SIGTERM to its whole process group
(systemd's KillMode=control-group, container inits) and SIGINT to the group (Ctrl-C in a terminal) all
drain the same way: /ready 503 at once, new requests 503 with Retry-After, the in-flight stream runs to
its end, then exit code 0 (not "killed by signal") without a traceback.

Each case needs a server of its own (the signal ends it); the three start together.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from harness.servers import RunningServer, start_tiny_server

CASES = {
    "sigterm-process": (signal.SIGTERM, False),
    "sigterm-group": (signal.SIGTERM, True),
    "sigint-group": (signal.SIGINT, True),
}
DRAIN_TIMEOUT_S = 120


def _mapped_shm(pid: int) -> set[str]:
    """The /dev/shm segments that the server ``pid`` and its engine processes have mapped (vLLM's
    engine-worker queues are multiprocessing shared memory)."""
    import psutil

    names = set()
    root = psutil.Process(pid)
    for proc in [root, *root.children(recursive=True)]:
        try:
            with open(f"/proc/{proc.pid}/maps") as maps:
                names.update(tok for line in maps for tok in line.split() if tok.startswith("/dev/shm/psm_"))
        except OSError:
            pass
    return names


SERVER_SHM: set[str] = set()


@pytest.fixture(scope="module")
def servers(tmp_path_factory, tiny_checkpoint_path):
    """One fresh server per case, started concurrently."""
    logs = tmp_path_factory.mktemp("drain")

    def start(name: str) -> RunningServer:
        return start_tiny_server(
            logs / f"{name}.log", tiny_checkpoint_path, "--drain-timeout-seconds", str(DRAIN_TIMEOUT_S)
        )

    with ThreadPoolExecutor(len(CASES)) as pool:
        futures = {name: pool.submit(start, name) for name in CASES}
        started = {}
        try:
            for name, fut in futures.items():
                started[name] = fut.result()
                SERVER_SHM.update(_mapped_shm(started[name].process.pid))
        finally:
            if len(started) < len(CASES):
                for srv in started.values():
                    srv.stop()
    yield started
    for srv in started.values():
        srv.stop(timeout=10)


@pytest.mark.parametrize("case", list(CASES))
def test_signal_drains_and_exits_zero(servers, case):
    sig, to_group = CASES[case]
    server = servers[case]
    events: list[str] = []
    first = threading.Event()
    done = threading.Event()

    def stream() -> None:
        body = {
            "messages": [{"role": "user", "content": "Tell a long story."}],
            "max_tokens": 6000,
            "ignore_eos": True,
            "temperature": 0,
            "stream": True,
        }
        try:
            with httpx.stream("POST", server.v1 + "/chat/completions", json=body, timeout=120) as resp:
                for line in resp.iter_lines():
                    if line.startswith("data: "):
                        events.append(line[6:])
                        first.set()
        finally:
            first.set()
            done.set()

    thread = threading.Thread(target=stream, daemon=True)
    thread.start()
    assert first.wait(120) and events, server.log_tail()
    t_signal = time.monotonic()
    if to_group:
        os.killpg(server.process.pid, sig)
    else:
        server.process.send_signal(sig)

    with httpx.Client(timeout=5) as client:
        deadline = time.monotonic() + 10
        ready = client.get(server.base_url + "/ready")
        while ready.status_code != 503 and time.monotonic() < deadline:
            ready = client.get(server.base_url + "/ready")
        assert ready.status_code == 503 and ready.json()["status"] == "draining"
        refused = client.post(
            server.v1 + "/chat/completions", json={"messages": [{"role": "user", "content": "x"}]}
        )
        assert refused.status_code == 503, refused.text
        assert refused.headers.get("retry-after") == "1"

    assert done.wait(DRAIN_TIMEOUT_S), "the in-flight stream did not finish"
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert not [c for c in chunks if "error" in c], chunks[-2:]
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    try:
        code = server.process.wait(timeout=DRAIN_TIMEOUT_S + 30)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"no exit after the drain:\n{server.log_tail()}") from None
    drain_s = time.monotonic() - t_signal
    log = server.log_text()
    assert code == 0, f"exit {code}\n{server.log_tail()}"
    assert "Traceback" not in log, server.log_tail(80)
    assert "EngineDeadError" not in log
    print(f"\n{case}: stream completed ({len(chunks)} chunks), exit 0 {drain_s:.1f} s after the signal")


def test_no_shared_memory_left_after_the_drains(servers):
    """After the three drained exits none of the /dev/shm segments their engines had mapped is left
    (each is unlinked by its creator or, within moments of the exit, by the resource tracker)."""
    assert SERVER_SHM, "the engines mapped no shared memory: nothing was checked"
    assert all(srv.process.poll() is not None for srv in servers.values())
    deadline = time.monotonic() + 10
    while any(os.path.exists(p) for p in SERVER_SHM) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in SERVER_SHM if os.path.exists(p)]
