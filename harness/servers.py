"""Start a server process, wait until it is ready, stop it with everything it spawned.

The one place where tests and benchmarks start ``interleave-serve``, vLLM's own OpenAI server or nginx.
Every server runs in its own session (process group), so :meth:`RunningServer.stop` also stops the
vLLM engine-core processes it spawned; its output goes to a log file whose tail is attached to errors.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def interleave_serve_command(port: int, *flags: str) -> list[str]:
    """``interleave-serve --host 127.0.0.1 --port PORT FLAGS...`` with this interpreter."""
    return [sys.executable, "-m", "server.cli", "--host", "127.0.0.1", "--port", str(port), *flags]


TINY_ENGINE_FLAGS = (
    "--dtype",
    "float32",
    "--enforce-eager",
    "--gpu-memory-utilization",
    "0.05",
)
"""Engine flags every test server on the tiny model uses on CPU (float32, eager, small memory fraction)."""


@dataclass
class RunningServer:
    """A server subprocess in its own process group.

    Attributes:
        base_url: ``http://127.0.0.1:PORT``.
        process: the process (its pid is also the process group id).
        log_path: where its stdout and stderr go.
        start_seconds: seconds from spawn until the ready endpoint answered 200.
    """

    base_url: str
    process: subprocess.Popen
    log_path: Path
    start_seconds: float = 0.0

    @property
    def v1(self) -> str:
        """The OpenAI base URL (``base_url + "/v1"``)."""
        return self.base_url + "/v1"

    @property
    def port(self) -> int:
        return int(self.base_url.rsplit(":", 1)[1])

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, n: int = 60) -> str:
        """The last ``n`` lines of the server's log."""
        return "\n".join(self.log_text().splitlines()[-n:]) or "(no log)"

    def signal_group(self, sig: int) -> None:
        """Send ``sig`` to the server's whole process group (no-op if it is gone)."""
        try:
            os.killpg(self.process.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self, timeout: float = 60.0, *, group: bool = True) -> int | None:
        """SIGTERM (to the process group, or only the main process), wait up to ``timeout`` seconds,
        then SIGKILL whatever is left of the group. Returns the exit code of the main process."""
        proc = self.process
        if proc.poll() is None:
            if group:
                self.signal_group(signal.SIGTERM)
            else:
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        # What is left of the group (multiprocessing's resource tracker unlinking what a killed
        # engine left in /dev/shm, an engine core that outlived its parent) gets a few seconds to
        # finish by itself, then SIGKILL.
        deadline = time.monotonic() + 5.0
        while self._group_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.signal_group(signal.SIGKILL)
        if proc.poll() is None:
            proc.wait(timeout=10)
        return proc.returncode

    def _group_alive(self) -> bool:
        try:
            os.killpg(self.process.pid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True


def start_server(
    cmd: Sequence[str],
    *,
    ready_url: str,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path = REPO,
    timeout: float = 600.0,
    ready_statuses: list[int] | None = None,
) -> RunningServer:
    """Spawn ``cmd`` in a new session and wait until ``ready_url`` answers 200.

    Args:
        cmd: the command line.
        ready_url: full URL of the readiness endpoint (``.../ready`` for ours, ``.../health`` for vLLM's).
        log_path: file for the server's stdout and stderr (its folder is created).
        env: the environment (default: this process's, with ``VLLM_CPU_KVCACHE_SPACE=1`` and
            ``PYTHONUNBUFFERED=1`` unless set).
        cwd: working directory (the repo root).
        timeout: seconds to wait for readiness.
        ready_statuses: if given, every status ``ready_url`` answered while waiting is appended
            (ours: 503 while the engine loads, then 200).

    Returns:
        The running server; its ``base_url`` is ``ready_url``'s scheme, host and port.

    Raises:
        RuntimeError: the process exited, or was not ready within ``timeout`` seconds; the message
            holds the log tail. The process group is stopped first.
    """
    environ = dict(os.environ if env is None else env)
    environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    environ.setdefault("PYTHONUNBUFFERED", "1")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    base_url = "/".join(ready_url.split("/", 3)[:3])
    t0 = time.perf_counter()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            list(cmd), cwd=cwd, env=environ, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = RunningServer(base_url, proc, log_path)
    deadline = time.monotonic() + timeout
    try:
        with httpx.Client(timeout=2.0) as client:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"{cmd[:4]} exited with {proc.returncode}:\n{server.log_tail()}")
                try:
                    status = client.get(ready_url).status_code
                    if ready_statuses is not None:
                        ready_statuses.append(status)
                    if status == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{cmd[:4]} not ready after {timeout:.0f} s:\n{server.log_tail()}")
                time.sleep(0.25)
    except BaseException:
        server.stop(timeout=10)
        raise
    server.start_seconds = time.perf_counter() - t0
    return server


def clean_environment(**extra: str) -> dict[str, str]:
    """This process's environment without ``INTERLEAVE_*`` settings (so a developer's shell does not
    change a test server), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INTERLEAVE_")}
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    env.update(extra)
    return env


def start_tiny_server(
    log_path: Path,
    checkpoint: Path,
    *flags: str,
    max_model_len: int = 8192,
    env: Mapping[str, str] | None = None,
    timeout: float = 600.0,
) -> RunningServer:
    """``interleave-serve`` on the built-in tiny checkpoint at ``checkpoint`` (prebuilt, e.g. by the
    ``tiny_checkpoint_path`` fixture) with :data:`TINY_ENGINE_FLAGS`, on a free port, plus ``flags``.

    Raises:
        RuntimeError: as :func:`start_server`.
    """
    port = free_port()
    cmd = interleave_serve_command(port, *TINY_ENGINE_FLAGS, "--max-model-len", str(max_model_len), *flags)
    environ = clean_environment(INTERLEAVE_CACHE_DIR=str(Path(checkpoint).parent), **dict(env or {}))
    return start_server(
        cmd, ready_url=f"http://127.0.0.1:{port}/ready", log_path=log_path, env=environ, timeout=timeout
    )
