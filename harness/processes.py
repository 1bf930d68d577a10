"""Whether processes have ended, for tests that check nothing outlives a server, replica or app.

A zombie has ended: it only waits for its parent (or, once orphaned, the machine's init) to reap it,
which the process under test does not control. One place for that rule.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import psutil


def alive(p: psutil.Process) -> bool:
    """True while ``p`` (the same process: pid and start time) runs and is not a zombie."""
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_gone(procs: Iterable[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait up to ``timeout`` seconds (polled every 0.1 s) for every process of ``procs`` to end;
    returns those still :func:`alive` then (empty when all ended)."""
    left = [p for p in procs if alive(p)]
    deadline = time.monotonic() + timeout
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = [p for p in left if alive(p)]
    return left
