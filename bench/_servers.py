"""Start and stop the servers that bench/serve.py compares, one at a time.

Started through :func:`harness.servers.start_server` (the one start-and-wait helper): every server
is a subprocess in its own session (process group), so stopping it also stops the vLLM engine-core
process it spawned. Logs go to a file per server and round; on a failed start the tail of the log is
raised with the error.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from harness import servers as harness_servers
from harness.servers import free_port

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
VLLM_BUILTIN = ServerKind(
    "vllm-builtin", "vLLM OpenAI server, built-in LlavaForConditionalGeneration", "/health", video=False
)
ENGINE = ServerKind(
    "engine", "AsyncLLM in-process, our engine arguments, media decoded beforehand (bench/_engine.py)", ""
)


def ours_flags(opts: EngineOptions) -> list[str]:
    """The `interleave-serve` flags of `opts` (without host and port): the `ours` server and the
    `engine` column (whose settings are parsed from the same flags) get the same engine."""
    return [
        "--model",
        opts.model,
        "--served-model-name",
        SERVED_NAME,
        "--dtype",
        opts.dtype,
        "--max-model-len",
        str(opts.max_model_len),
        "--gpu-memory-utilization",
        str(opts.gpu_memory_utilization),
        "--enforce-eager" if opts.enforce_eager else "--no-enforce-eager",
        "--enable-prefix-caching" if opts.prefix_caching else "--no-enable-prefix-caching",
        "--max-num-seqs",
        str(opts.max_num_seqs),
        "--seed",
        str(opts.seed),
        # The engine's image limit is images + frames + views; match the workload like vLLM's
        # --limit-mm-per-prompt below ({"image": 2, "video": 1} with num_frames frames per video).
        "--max-images-per-request",
        str(opts.images_per_request),
        "--max-frames-per-request",
        str(opts.num_frames),
        "--max-views-per-request",
        "0",
        "--default-num-frames",
        str(opts.num_frames),
        "--log-level",
        "warning",
    ]


def _ours_command(opts: EngineOptions, port: int) -> list[str]:
    exe = Path(sys.executable).with_name("interleave-serve")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "server.cli"]
    return cmd + ["--host", "127.0.0.1", "--port", str(port), *ours_flags(opts)]


def _vllm_command(opts: EngineOptions, port: int, plugin: bool) -> list[str]:
    import model_adapter

    cmd = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        opts.model,
        "--served-model-name",
        SERVED_NAME,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--chat-template",
        model_adapter.chat_template_path(),
        "--dtype",
        opts.dtype,
        "--max-model-len",
        str(opts.max_model_len),
        "--gpu-memory-utilization",
        str(opts.gpu_memory_utilization),
        "--enable-prefix-caching" if opts.prefix_caching else "--no-enable-prefix-caching",
        "--max-num-seqs",
        str(opts.max_num_seqs),
        "--seed",
        str(opts.seed),
        "--uvicorn-log-level",
        "warning",
    ]
    if opts.enforce_eager:
        cmd.append("--enforce-eager")
    if plugin:
        cmd += [
            "--hf-overrides",
            json.dumps(model_adapter.hf_overrides()),
            "--limit-mm-per-prompt",
            json.dumps({"image": opts.images_per_request, "video": 1}),
            "--media-io-kwargs",
            json.dumps({"video": {"num_frames": opts.num_frames}}),
        ]
    else:
        # The checkpoint's own architecture (LlavaForConditionalGeneration): images only.
        cmd += ["--limit-mm-per-prompt", json.dumps({"image": opts.images_per_request})]
    return cmd


@dataclass
class RunningServer(harness_servers.RunningServer):
    """A benchmarked server (:class:`harness.servers.RunningServer`: ``base_url``, ``process``,
    ``log_path``, ``start_seconds``, ``log_tail()``, ``stop()`` of the whole process group), plus
    its column and the scheduler settings it logged."""

    kind: ServerKind | None = None
    scheduler: dict = field(default_factory=dict)

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds of the server process tree (see :func:`process_tree_cpu_seconds`)."""
        return process_tree_cpu_seconds(self.process.pid)


_SCHED_RE = re.compile(r"(max_num_batched_tokens)=(\d+)")  # logged by the engine when chunked prefill is on


def start_server(
    kind: ServerKind, opts: EngineOptions, log_dir: Path, tag: str, timeout: float = 900.0
) -> RunningServer:
    """Start ``kind`` and wait until its ready endpoint answers 200.

    Raises:
        RuntimeError: the process exited or did not become ready in ``timeout`` seconds (with the log tail).
    """
    port = free_port()
    log_path = log_dir / f"{kind.key}-{tag}.log"
    started = harness_servers.start_server(
        kind.command(opts, port),
        ready_url=f"http://127.0.0.1:{port}{kind.ready_path}",
        log_path=log_path,
        timeout=timeout,
    )
    server = RunningServer(**vars(started), kind=kind)
    try:
        for key, value in _SCHED_RE.findall(log_path.read_text(errors="replace")):
            server.scheduler.setdefault(key, int(value))
    except OSError:
        pass
    return server


def process_tree_cpu_seconds(pid: int) -> dict[str, float]:
    """CPU seconds (user + system) so far of process ``pid`` and of each of its descendants, keyed by
    role: ``api`` (process ``pid`` itself, the HTTP server) and the others by process name
    (``VLLM::EngineCore``, ``VLLM::Worker``, ...; Python helpers such as the resource tracker:
    ``helper``)."""
    import psutil

    out: dict[str, float] = {}
    try:
        root = psutil.Process(pid)
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
