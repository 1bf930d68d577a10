"""``priority`` really reorders the engine's queue under ``--scheduling-policy priority``.

The module starts its OWN server (priority scheduling, ``--max-num-seqs 1``: one request runs at a
time, the others wait in vLLM's queue). A long streaming request A (priority -100, so nothing
preempts it) occupies the engine; B is sent and seen waiting (``vllm:num_requests_waiting`` on
``/metrics``), then C, and both are seen waiting. Then A's client closes its stream, the server
aborts A, and the engine runs the queue: vLLM's priority queue pops the smallest
``(priority, arrival_time)`` first (vllm/v1/core/sched/request_queue.py ``PriorityRequestQueue``), so

* B priority 10, C priority -10: C runs (and finishes) before B, although B arrived first;
* control, B and C both priority 0: arrival order decides, B first.

With one sequence slot, the request that runs first also finishes first, so the order is read from
the server's request log (one line per request, written as it ends; named by ``x-request-id``), not
from client threads, whose timing a busy 2-core machine can skew. Only order is asserted, never wall
time; every wait has a deadline.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
import uuid

import httpx
import pytest

from harness.servers import RunningServer, start_tiny_server

LONG_TOKENS = 8000  # A: holds the single sequence slot while B and C are queued (about 50 s of
# decoding for the tiny model on 2 CPU cores; it is aborted as soon as both are queued)
SHORT_TOKENS = 4  # B and C
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
            max_model_len=8192,
        )  # fmt: skip
    except RuntimeError as exc:
        pytest.fail(f"interleave-serve did not become ready: {exc}")
    yield server
    server.stop(timeout=60, group=False)


def _num_waiting(client: httpx.Client) -> float:
    """Sum of ``vllm:num_requests_waiting`` over engines, from ``/metrics``."""
    total = 0.0
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(("vllm:num_requests_waiting{", "vllm:num_requests_waiting ")):
            total += float(line.rsplit(" ", 1)[1])
    return total


class _LongStream:
    """Request A in a thread: a streaming chat request that reads until :meth:`close` is called."""

    def __init__(self, base_url: str, request_id: str) -> None:
        self.first_token = threading.Event()
        self.ended = threading.Event()
        self._close = threading.Event()
        self.error: str | None = None
        body = {
            "messages": [{"role": "user", "content": "Request A: tell a long story."}],
            "max_tokens": LONG_TOKENS,
            "ignore_eos": True,
            "temperature": 0,
            "stream": True,
            "priority": -100,
        }

        def run() -> None:
            try:
                with (
                    httpx.Client(base_url=base_url, timeout=WAIT_S) as c,
                    c.stream(
                        "POST", "/v1/chat/completions", json=body, headers={"x-request-id": request_id}
                    ) as r,
                ):
                    if r.status_code != 200:
                        self.error = f"A: HTTP {r.status_code} {r.read()!r}"
                        return
                    for line in r.iter_lines():
                        if line.startswith("data: "):
                            self.first_token.set()
                        if self._close.is_set():
                            return  # closing the stream: the server aborts A
            except Exception as exc:  # noqa: BLE001 - reported by the test thread
                self.error = f"A: {exc!r}"
            finally:
                self.first_token.set()
                self.ended.set()

        self.thread = threading.Thread(target=run, name="request-A", daemon=True)
        self.thread.start()

    def close(self) -> None:
        self._close.set()
        self.thread.join(WAIT_S)


_SEND = """
import json, sys, httpx
url, request_id, body = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
r = httpx.post(url, json=body, headers={"x-request-id": request_id}, timeout=float(sys.argv[4]))
print(r.status_code)
"""


def _send(base_url: str, request_id: str, priority: int) -> subprocess.Popen:
    """A short non-streaming chat request from a process of its own (threads of this process share
    its GIL with A's reader and the /metrics polls, and were seen to start seconds late); it prints
    the status code."""
    body = {
        "messages": [{"role": "user", "content": f"Request {request_id}: say something."}],
        "max_tokens": SHORT_TOKENS,
        "temperature": 0,
        "priority": priority,
    }
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            _SEND,
            base_url + "/v1/chat/completions",
            request_id,
            json.dumps(body),
            str(WAIT_S),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_waiting(client: httpx.Client, at_least: int, server: RunningServer, a: _LongStream) -> None:
    """Poll ``/metrics`` until at least ``at_least`` requests wait in the engine's queue (bounded;
    fails at once if A, the request they wait behind, has ended)."""
    deadline = time.monotonic() + WAIT_S
    while (n := _num_waiting(client)) < at_least:
        assert not a.ended.is_set(), f"A ended while only {n} requests waited, wanted {at_least}: {a.error}"
        assert time.monotonic() < deadline, (
            f"only {n} requests waiting, wanted {at_least}\n{server.log_tail()}"
        )
        time.sleep(0.02)


def _finish_order(server: RunningServer, request_ids: list[str]) -> list[str]:
    """``request_ids`` in the order of their request lines in the log (each is written just after
    its response was sent, so the log is polled until all are there; bounded)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        ends = {}
        for n, line in enumerate(server.log_text().splitlines()):
            found = re.search(r"\[request (\S+)\]: request POST /v1/chat/completions (\d+)", line)
            if found and found.group(1) in request_ids:
                ends[found.group(1)] = n
        missing = [r for r in request_ids if r not in ends]
        if not missing:
            return sorted(request_ids, key=ends.__getitem__)
        assert time.monotonic() < deadline, f"no request line for {missing}\n{server.log_tail()}"
        time.sleep(0.05)


def _run_ordering(server: RunningServer, priority_b: int, priority_c: int) -> list[str]:
    """A runs; B, then C are queued behind it; A is closed; returns ["B", "C"] in finishing order."""
    tag = uuid.uuid4().hex[:8]
    ids = {name: f"priority-{name}-{tag}" for name in "ABC"}
    # one kept-alive connection, polled every 50 ms (never idle near the server's keep-alive timeout)
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        assert _num_waiting(client) == 0
        a = _LongStream(server.base_url, ids["A"])
        assert a.first_token.wait(WAIT_S) and a.error is None, f"A produced no token: {a.error}"
        senders = {"B": _send(server.base_url, ids["B"], priority_b)}
        _wait_waiting(client, 1, server, a)
        senders["C"] = _send(server.base_url, ids["C"], priority_c)
        _wait_waiting(client, 2, server, a)
    a.close()  # A's client goes away: the engine aborts A and runs its queue
    statuses = {name: p.communicate(timeout=WAIT_S)[0].strip() for name, p in senders.items()}
    assert a.error is None, a.error
    assert statuses == {"B": "200", "C": "200"}, statuses
    order = _finish_order(server, [ids["B"], ids["C"]])
    names = [name for r in order for name, i in ids.items() if i == r]
    print(f"\npriority B={priority_b} C={priority_c}: finished in the order {names}")
    return names


def test_lower_priority_value_runs_first(priority_server):
    """B (priority 10) arrives before C (priority -10), both queued behind A: C runs first."""
    assert _run_ordering(priority_server, priority_b=10, priority_c=-10) == ["C", "B"]


def test_equal_priority_is_first_come_first_served(priority_server):
    """Control: B and C with equal priority run in arrival order, B first."""
    assert _run_ordering(priority_server, priority_b=0, priority_c=0) == ["B", "C"]
