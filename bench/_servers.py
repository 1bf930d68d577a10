"""Start and stop the servers that bench/serve.py compares, one at a time.

Every server is a subprocess in its own session (process group), so stopping it also stops the vLLM
engine-core process it spawned. Logs go to a file per server and round; on a failed start the tail of
the log is raised with the error.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

SERVED_NAME = "bench-model"


@dataclass(frozen=True)
class EngineOptions:
    """Engine arguments given identically to every server."""

    model: str
    dtype: str
    max_model_len: int
    gpu_memory_utilization: float
    enforce_eager: bool
    prefix_caching: bool
    max_num_seqs: int
    seed: int = 0
    num_frames: int = 8
    images_per_request: int = 2


@dataclass(frozen=True)
class ServerKind:
    """One column of the comparison.

    Attributes:
        key: short name in the tables (``ours``, ``vllm``, ``vllm-builtin``).
        label: what it is, for the header.
        ready_path: the endpoint that answers 200 once the model is loaded.
        video: whether it accepts ``video_url`` parts.
    """

    key: str
    label: str
    ready_path: str
    video: bool = True

    def command(self, opts: EngineOptions, port: int) -> list[str]:
        if self.key == "ours":
            return _ours_command(opts, port)
        if self.key == "vllm":
            return _vllm_command(opts, port, plugin=True)
        if self.key == "vllm-builtin":
            return _vllm_command(opts, port, plugin=False)
        raise ValueError(self.key)


OURS = ServerKind("ours", "interleave-serve (server/ on AsyncLLM)", "/ready")
VLLM = ServerKind("vllm", "vLLM OpenAI server + our plugin", "/health")
VLLM_BUILTIN = ServerKind("vllm-builtin", "vLLM OpenAI server, built-in LlavaForConditionalGeneration", "/health", video=False)
ENGINE = ServerKind("engine", "AsyncLLM in-process, our engine arguments, media decoded beforehand (bench/_engine.py)", "")


def ours_flags(opts: EngineOptions) -> list[str]:
    """The `interleave-serve` flags of `opts` (without host and port): the `ours` server and the
    `engine` column (whose settings are parsed from the same flags) get the same engine."""
    return [
        "--model", opts.model,
        "--served-model-name", SERVED_NAME,
        "--dtype", opts.dtype,
        "--max-model-len", str(opts.max_model_len),
        "--gpu-memory-utilization", str(opts.gpu_memory_utilization),
        "--enforce-eager" if opts.enforce_eager else "--no-enforce-eager",
        "--enable-prefix-caching" if opts.prefix_caching else "--no-enable-prefix-caching",
        "--max-num-seqs", str(opts.max_num_seqs),
        "--seed", str(opts.seed),
        # The engine's image limit is images + frames + views; match the workload like vLLM's
        # --limit-mm-per-prompt below ({"image": 2, "video": 1} with num_frames frames per video).
        "--max-images-per-request", str(opts.images_per_request),
        "--max-frames-per-request", str(opts.num_frames),
        "--max-views-per-request", "0",
        "--default-num-frames", str(opts.num_frames),
        "--log-level", "warning",
    ]


def _ours_command(opts: EngineOptions, port: int) -> list[str]:
    exe = Path(sys.executable).with_name("interleave-serve")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "server.cli"]
    return cmd + ["--host", "127.0.0.1", "--port", str(port), *ours_flags(opts)]


def _vllm_command(opts: EngineOptions, port: int, plugin: bool) -> list[str]:
    import model_adapter

    cmd = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server",
        "--model", opts.model,
        "--served-model-name", SERVED_NAME,
        "--host", "127.0.0.1",
        "--port", str(port),
        "--chat-template", model_adapter.chat_template_path(),
        "--dtype", opts.dtype,
        "--max-model-len", str(opts.max_model_len),
        "--gpu-memory-utilization", str(opts.gpu_memory_utilization),
        "--enable-prefix-caching" if opts.prefix_caching else "--no-enable-prefix-caching",
        "--max-num-seqs", str(opts.max_num_seqs),
        "--seed", str(opts.seed),
        "--uvicorn-log-level", "warning",
    ]
    if opts.enforce_eager:
        cmd.append("--enforce-eager")
    if plugin:
        cmd += [
            "--hf-overrides", json.dumps(model_adapter.hf_overrides()),
            "--limit-mm-per-prompt", json.dumps({"image": opts.images_per_request, "video": 1}),
            "--media-io-kwargs", json.dumps({"video": {"num_frames": opts.num_frames}}),
        ]
    else:
        # The checkpoint's own architecture (LlavaForConditionalGeneration): images only.
        cmd += ["--limit-mm-per-prompt", json.dumps({"image": opts.images_per_request})]
    return cmd


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RunningServer:
    kind: ServerKind
    base_url: str
    process: subprocess.Popen
    log_path: Path
    start_seconds: float = 0.0
    scheduler: dict = field(default_factory=dict)

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds (user + system) so far of the server process and of each of its descendants,
        keyed by role: ``api`` (the HTTP server process) and the others by process name
        (``VLLM::EngineCore``, ``VLLM::Worker``, ...)."""
        import psutil

        out: dict[str, float] = {}
        try:
            root = psutil.Process(self.process.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return out
        for proc in procs:
            try:
                t = proc.cpu_times()
                name = "api" if proc.pid == root.pid else proc.name()
                if name.startswith("python") or "resource_tracker" in " ".join(proc.cmdline()):
                    name = "helper"
                out[name] = out.get(name, 0.0) + t.user + t.system
            except psutil.NoSuchProcess:
                pass
        return out

    def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM the server's process group (the server and its engine core), then SIGKILL."""
        proc = self.process
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        # Whatever is left of the group (an engine core that outlived its parent).
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if proc.poll() is None:
            proc.wait(timeout=10)


_SCHED_RE = re.compile(r"(max_num_batched_tokens)=(\d+)")  # logged by the engine when chunked prefill is on


def start_server(kind: ServerKind, opts: EngineOptions, log_dir: Path, tag: str, timeout: float = 900.0) -> RunningServer:
    """Start ``kind`` and wait until its ready endpoint answers 200.

    Raises:
        RuntimeError: the process exited or did not become ready in ``timeout`` seconds (with the log tail).
    """
    port = free_port()
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{kind.key}-{tag}.log"
    env = dict(os.environ)
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    env.setdefault("PYTHONUNBUFFERED", "1")
    t0 = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            kind.command(opts, port), stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    server = RunningServer(kind, f"http://127.0.0.1:{port}", proc, log_path)
    deadline = time.monotonic() + timeout
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{kind.key} exited with {proc.returncode}:\n{server.log_tail()}")
            try:
                if httpx.get(server.base_url + kind.ready_path, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{kind.key} not ready after {timeout:.0f} s:\n{server.log_tail()}")
            time.sleep(0.5)
    except BaseException:
        server.stop()
        raise
    server.start_seconds = time.perf_counter() - t0
    try:
        for key, value in _SCHED_RE.findall(log_path.read_text(errors="replace")):
            server.scheduler.setdefault(key, int(value))
    except OSError:
        pass
    return server
