"""The vLLM plugin hook that detaches the engine core from the server (server/engine_process.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from harness.processes import alive, wait_gone
from server import engine_process

pytestmark = pytest.mark.unit


@pytest.fixture
def as_engine_core(monkeypatch):
    """Make this process look like an engine core spawned by a marked server (nothing is changed
    for real: setpgid, prctl and nice are recorded)."""
    calls: list[tuple] = []
    server_pid = 4242
    monkeypatch.setenv(engine_process.API_PID_ENV, str(server_pid))
    monkeypatch.setattr(os, "getppid", lambda: server_pid)
    monkeypatch.setattr(os, "getpgrp", lambda: 77)
    monkeypatch.setattr(os, "getpgid", lambda pid: 77)
    monkeypatch.setattr(os, "setpgid", lambda pid, pgid: calls.append(("setpgid", pid, pgid)))
    monkeypatch.setattr(os, "nice", lambda inc: calls.append(("nice", inc)))

    class _Libc:
        def prctl(self, *args):
            calls.append(("prctl", *args))
            return 0

    monkeypatch.setattr(engine_process.ctypes, "CDLL", lambda *a, **k: _Libc())
    return calls


@pytest.mark.parametrize("cpu_build", [True, False])
def test_engine_core_is_detached_and_niced_only_on_the_cpu_build(as_engine_core, monkeypatch, cpu_build):
    monkeypatch.setattr(engine_process, "_is_cpu_build", lambda: cpu_build)
    engine_process.on_vllm_process_start()
    assert ("setpgid", 0, 0) in as_engine_core
    assert ("prctl", 1, int(signal.SIGKILL), 0, 0, 0) in as_engine_core  # PR_SET_PDEATHSIG
    niced = [c for c in as_engine_core if c[0] == "nice"]
    assert niced == ([("nice", engine_process.CPU_ENGINE_NICE)] if cpu_build else [])


def test_other_processes_are_left_alone(as_engine_core, monkeypatch):
    monkeypatch.setattr(engine_process, "_is_cpu_build", lambda: True)
    monkeypatch.setattr(os, "getppid", lambda: 1)  # not a child of the server: a worker, or vLLM elsewhere
    engine_process.on_vllm_process_start()
    assert as_engine_core == []


# A server with many threads (uvicorn's, the media decoders', vLLM's client's) that spawns an
# "engine core" running the real hook; that engine core's SIGTERM handler never returns, as vLLM's
# can deadlock when SIGTERMs come in a burst (the kernel sends the death signal again as the child
# passes from one exiting thread of its parent to the next).
_SERVER = """
import subprocess, sys, threading, time
from server import engine_process
engine_process.mark_api_process()
for _ in range(40):
    threading.Thread(target=time.sleep, args=(600,), daemon=True).start()
child = subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2]])
time.sleep(600)
"""
_ENGINE_CORE = """
import os, signal, sys, time
from server import engine_process
engine_process._is_cpu_build = lambda: False
engine_process.on_vllm_process_start()
signal.signal(signal.SIGTERM, lambda *_: time.sleep(600))
with open(sys.argv[1], "w") as f:
    f.write(str(os.getpid()))
time.sleep(600)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_engine_core_dies_with_a_killed_server_even_if_its_sigterm_handler_hangs(tmp_path: Path):
    pid_file = tmp_path / "engine-core.pid"
    repo = Path(__file__).resolve().parents[2]
    server = subprocess.Popen(
        [sys.executable, "-c", _SERVER, _ENGINE_CORE, str(pid_file)],
        cwd=repo,
        env={**os.environ, "PYTHONPATH": str(repo)},
        start_new_session=True,
    )
    engine_core: psutil.Process | None = None
    try:
        deadline = time.monotonic() + 60
        while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
            assert server.poll() is None, "the server process ended early"
            time.sleep(0.05)
        engine_core = psutil.Process(int(pid_file.read_text()))
        assert os.getpgid(engine_core.pid) == engine_core.pid  # detached from the server's group
        server.kill()  # as the OOM killer or `docker kill` would
        server.wait(10)
        assert not wait_gone([engine_core], timeout=10), "the engine core outlived its killed server"
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
        if engine_core is not None and alive(engine_core):
            engine_core.kill()
