"""``priority`` really reorders the engine's queue under ``--scheduling-policy priority``.

The module starts its OWN server (priority scheduling, ``--max-num-seqs 1``: one request runs at a
time, the others wait in vLLM's queue). A long streaming request A occupies the engine; while it runs,
B is sent and seen waiting (``vllm:num_requests_waiting`` on ``/metrics``), then C. vLLM's priority
queue pops the smallest ``(priority, arrival_time)`` first (vllm/v1/core/sched/request_queue.py
``PriorityRequestQueue``), so:

* B priority 10, C priority -10: C's first token arrives before B's although B arrived first;
* control, B and C both priority 0: arrival order decides, B's first token comes first.

Only the order of events is asserted, never wall time; every wait has a deadline.
"""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest

from harness.servers import RunningServer, start_tiny_server

LONG_TOKENS = 3000  # A: keeps the single sequence slot busy while B and C are queued (the tiny model
# streams about 250 tokens/s on 2 CPU cores, so A runs for seconds)
SHORT_TOKENS = 4  # B and C: a few tokens each
WAIT_S = 120.0  # deadline for any single wait (first token, queued, request done)


@pytest.fixture(scope="module")
def priority_server(tmp_path_factory, tiny_checkpoint_path):
    """``interleave-serve --scheduling-policy priority --max-num-seqs 1`` on the tiny model."""
    log_path = tmp_path_factory.mktemp("priority-server-log") / "server.log"
    try:
        server = start_tiny_server(
            log_path,
            tiny_checkpoint_path,
            "--scheduling-policy", "priority",
            "--max-num-seqs", "1",
            "--drain-timeout-seconds", "10",
            max_model_len=4096,
        )  # fmt: skip
    except RuntimeError as exc:
        pytest.fail(f"interleave-serve did not become ready: {exc}")
    yield server
    server.stop(timeout=60, group=False)


class _Events:
    """Thread-safe, ordered log of ``(request name, event)``; ``event`` is ``first_token`` or ``done``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.log: list[tuple[str, str]] = []
        self.errors: list[str] = []
        self.first_token: dict[str, threading.Event] = {}
        self.done: dict[str, threading.Event] = {}

    def add(self, name: str, event: str) -> None:
        with self._lock:
            self.log.append((name, event))
        (self.first_token if event == "first_token" else self.done)[name].set()

    def index(self, name: str, event: str) -> int:
        return self.log.index((name, event))


def _stream(base_url: str, events: _Events, name: str, *, priority: int, max_tokens: int) -> threading.Thread:
    """Start a streaming chat request in a thread; log its first content chunk and its end in ``events``."""
    events.first_token[name] = threading.Event()
    events.done[name] = threading.Event()
    body = {
        "messages": [{"role": "user", "content": f"Request {name}: tell a long story."}],
        "max_tokens": max_tokens,
        "ignore_eos": True,
        "temperature": 0,
        "stream": True,
        "priority": priority,
    }

    def run() -> None:
        seen_first = False
        try:
            with (
                httpx.Client(base_url=base_url, timeout=WAIT_S) as c,
                c.stream("POST", "/v1/chat/completions", json=body) as r,
            ):
                if r.status_code != 200:
                    events.errors.append(f"{name}: HTTP {r.status_code} {r.read()!r}")
                    return
                for line in r.iter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    chunk = json.loads(line[len("data: ") :])
                    choices = chunk.get("choices") or []
                    if not seen_first and choices and (choices[0].get("delta") or {}).get("content"):
                        seen_first = True
                        events.add(name, "first_token")
        except Exception as exc:  # noqa: BLE001 - reported by the test thread
            events.errors.append(f"{name}: {exc!r}")
        finally:
            if not seen_first:
                events.first_token[name].set()  # unblock waiters; the assertion reports the missing token
            events.add(name, "done")

    thread = threading.Thread(target=run, name=f"request-{name}", daemon=True)
    thread.start()
    return thread


def _num_waiting(client: httpx.Client) -> float:
    """Sum of ``vllm:num_requests_waiting`` over engines, from ``/metrics``."""
    total = 0.0
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(("vllm:num_requests_waiting{", "vllm:num_requests_waiting ")):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _wait_waiting(client: httpx.Client, at_least: int, server: RunningServer, events: _Events) -> None:
    """Poll ``/metrics`` until at least ``at_least`` requests wait in the engine's queue (bounded;
    fails at once if A, the request they wait behind, has ended)."""
    deadline = time.monotonic() + WAIT_S
    while (n := _num_waiting(client)) < at_least:
        assert not events.done["A"].is_set(), (
            f"A ended while only {n} requests waited, wanted {at_least}: {events.log}"
        )
        assert time.monotonic() < deadline, (
            f"only {n} requests waiting, wanted {at_least}\n{server.log_tail()}"
        )
        time.sleep(0.02)


def _run_ordering(server: RunningServer, priority_b: int, priority_c: int) -> list[tuple[str, str]]:
    """A (long) runs; B, then C are queued behind it; returns the ordered event log once all are done."""
    events = _Events()
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        assert _num_waiting(client) == 0
        threads = [_stream(server.base_url, events, "A", priority=0, max_tokens=LONG_TOKENS)]
        assert events.first_token["A"].wait(WAIT_S), f"A produced no token\n{server.log_tail()}"
        assert not events.done["A"].is_set(), events.errors
        threads.append(_stream(server.base_url, events, "B", priority=priority_b, max_tokens=SHORT_TOKENS))
        _wait_waiting(client, 1, server, events)
        assert not events.done["A"].is_set(), f"A ended before C was sent: {events.log}"
        threads.append(_stream(server.base_url, events, "C", priority=priority_c, max_tokens=SHORT_TOKENS))
        # C's arrival in the queue is not required here: had C arrived after A ended, B (queued, as seen
        # above) would run first, so "C before B" can only come from the priority order.
        for t in threads:
            t.join(WAIT_S * 2)
            assert not t.is_alive(), f"{t.name} did not finish\n{server.log_tail()}"
    assert not events.errors, events.errors
    for name in "ABC":
        assert (name, "first_token") in events.log, (name, events.log)
    print(f"\npriority B={priority_b} C={priority_c}: {events.log}")
    return events.log


def test_lower_priority_value_runs_first(priority_server):
    """B (priority 10) arrives before C (priority -10), both queued behind A: C runs first."""
    log = _run_ordering(priority_server, priority_b=10, priority_c=-10)
    assert log.index(("C", "first_token")) < log.index(("B", "first_token")), log


def test_equal_priority_is_first_come_first_served(priority_server):
    """Control: B and C with equal priority run in arrival order, B first."""
    log = _run_ordering(priority_server, priority_b=0, priority_c=0)
    assert log.index(("B", "first_token")) < log.index(("C", "first_token")), log
