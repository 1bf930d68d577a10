"""Keep vLLM's engine processes out of the server's process group, tied to the server's life.

A signal sent to the server's whole process group (systemd's default ``KillMode=control-group``, a
terminal's Ctrl-C, some container inits) would reach vLLM's engine-core and worker processes
directly: they stop at once and in-flight requests fail, before the server has drained. So each
engine-core process that the server spawns moves into a process group of its own when vLLM loads its
plugins there (:func:`on_vllm_process_start`, a ``vllm.general_plugins`` entry point, runs first in
every vLLM process; the workers the engine core spawns afterwards inherit its group). The server
stops the engine itself after draining (``AsyncLLM.shutdown``, which signals the engine core
directly), and the engine core asks the kernel for SIGKILL when the server process dies
(``PR_SET_PDEATHSIG``), so it never outlives a server that was killed; its workers follow it (vLLM's
death pipe). Not SIGTERM: the kernel sends the death signal each time the engine core passes from an
exiting thread of the server to the next (measured: 16 SIGTERMs from one SIGKILL of a 40-thread
parent), and vLLM's engine-core SIGTERM handler (``threading.Event.set`` under a signal) deadlocks on
such a burst; an engine core and its worker were found hung that way, 38 minutes after their server
was killed. A server that dies has no request left to finish, so nothing is lost by SIGKILL.

On vLLM's CPU build the engine core also lowers its CPU priority to nice :data:`CPU_ENGINE_NICE`
(its workers inherit it): there the engine core and its worker spin on the same few cores as the
HTTP server, and without it the server's event loop (and every other process of the machine) could
wait seconds for a CPU while a long generation ran; new connections, ``/health`` and the client
disconnects that abort requests were then seen seconds late (measured on 2 cores: a new connection's
``/health`` answered after 7-13 s during one 3,000-token stream; at nice 10, in milliseconds). The
server is the lighter load, so giving it the CPU first costs the engine little. GPU builds are left
alone (there the engine core feeds the GPU and the machine has cores to spare).

Only processes started by a server that called :func:`mark_api_process` are moved; vLLM used in any
other program is left alone. Linux only (elsewhere nothing is changed).
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys

API_PID_ENV = "LLAVA_INTERLEAVE_API_PID"
"""Environment variable holding the server process's pid (inherited by the engine processes)."""

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>

CPU_ENGINE_NICE = 10
"""Nice increment of the engine core (and its workers) on vLLM's CPU build; 0-19, higher yields more."""

logger = logging.getLogger(__name__)


def mark_api_process() -> None:
    """Record this process as the server whose engine processes are to be detached (call before
    the engine starts)."""
    os.environ[API_PID_ENV] = str(os.getpid())


def on_vllm_process_start() -> None:
    """vLLM plugin hook: in an engine-core process spawned by a marked server, leave the server's
    process group, get SIGKILL when the server dies and, on the CPU build, lower the CPU priority
    (:data:`CPU_ENGINE_NICE`). A no-op in every other process."""
    api_pid = os.environ.get(API_PID_ENV)
    if not api_pid or not sys.platform.startswith("linux"):
        return
    try:
        api = int(api_pid)
    except ValueError:
        return
    if os.getpid() == api or os.getppid() != api or os.getpgrp() != os.getpgid(api):
        return  # the server itself, a worker of the engine core, or already detached
    os.setpgid(0, 0)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
        logger.warning("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())
    if os.getppid() != api:  # the server died before the death signal was armed
        os.kill(os.getpid(), signal.SIGKILL)
    if _is_cpu_build():
        os.nice(CPU_ENGINE_NICE)


def _is_cpu_build() -> bool:
    """True on vLLM's CPU platform (already imported in a vLLM process, so this is cheap)."""
    try:
        from vllm.platforms import current_platform

        return bool(current_platform.is_cpu())
    except Exception:  # noqa: BLE001 - an unknown platform: leave the priority alone
        return False
