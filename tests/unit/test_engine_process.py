"""The vLLM plugin hook that detaches the engine core from the server (server/engine_process.py)."""

from __future__ import annotations

import os

import pytest

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
    assert any(c[0] == "prctl" and c[1] == 1 for c in as_engine_core)  # PR_SET_PDEATHSIG
    niced = [c for c in as_engine_core if c[0] == "nice"]
    assert niced == ([("nice", engine_process.CPU_ENGINE_NICE)] if cpu_build else [])


def test_other_processes_are_left_alone(as_engine_core, monkeypatch):
    monkeypatch.setattr(engine_process, "_is_cpu_build", lambda: True)
    monkeypatch.setattr(os, "getppid", lambda: 1)  # not a child of the server: a worker, or vLLM elsewhere
    engine_process.on_vllm_process_start()
    assert as_engine_core == []
