"""Serving benchmark: our `interleave-serve` versus vLLM's own OpenAI server with our plugin.

Both servers run the same checkpoint with the same engine arguments (dtype, max_model_len,
enforce_eager, memory fraction, prefix caching, max_num_seqs, seed) and get the same workload from
one async load generator (httpx, streaming SSE with `stream_options.include_usage`):

- `image2`: two 640x480 JPEG images (data: URLs) between text parts,
- `video`:  one 4 s 320x240 H.264 clip (data: URL) as `video_url` with `num_frames` 8,
- `text`:   text only,

`--requests` of each type, interleaved (image2, video, text, image2, ...), at `--concurrency`
requests in flight, temperature 0, seed 0, `max_tokens` and `ignore_eos` (vLLM honours it; our server
ignores unknown fields, so compare the output tokens each server actually produced: the tables show
them per request). Every request starts with its own number, so prefix caching shares only the system
prompt; the media bytes are identical for both servers (generated once per run).

The servers never run at the same time (they would share the CPU cores): every round starts server
A, warms it up (one request of each type), runs the workload, stops it, then does the same with
server B; `--rounds` rounds alternate A, B, A, B, ... so drift on a shared machine shows. Each server is
started once per round (the start time is printed, but not part of any number).

Reported per server and round: requests/s, output tokens/s (from `usage`), time to first token
(first non-empty content delta) p50/p99 and end-to-end latency p50/p99, then the median of the
rounds and the ratios ours/vLLM (throughput: higher is better for ours; latency: lower is).

On a CUDA machine a third column runs vLLM's built-in `LlavaForConditionalGeneration` (no
`hf_overrides`, images and text only: its workload has no video requests, so compare its per-type
rows, not its overall throughput).

    python bench/serve.py --quick                       # 1 round, 3 requests per type, concurrency 2
    python bench/serve.py                               # 3 rounds, 12 per type, concurrency 4
    python bench/serve.py --size 0.5b --json out.json   # random weights at the real 0.5B size (GPU)
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import numpy as np  # noqa: E402

from bench._servers import OURS, SERVED_NAME, VLLM, VLLM_BUILTIN, EngineOptions, ServerKind, start_server  # noqa: E402

TYPES = ("image2", "video", "text")
SERVER_KINDS: dict[str, ServerKind] = {k.key: k for k in (OURS, VLLM, VLLM_BUILTIN)}
IMAGE_SIZE = (640, 480)
VIDEO_SIZE = (320, 240)
VIDEO_SECONDS = 4
VIDEO_FPS = 30


# --------------------------------------------------------------------------------------------------
# media (identical bytes for every server)


def make_images(seed: int = 0) -> list[bytes]:
    """Two 640x480 JPEGs: smooth gradients with noise and a few boxes (not trivially compressible)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    width, height = IMAGE_SIZE
    yy, xx = np.mgrid[0:height, 0:width]
    out = []
    for k in range(2):
        img = np.stack(
            [
                127 + 100 * np.sin(xx / (19.0 + 7 * k)) * np.cos(yy / 29.0),
                127 + 100 * np.sin((xx + yy) / (37.0 + 5 * k)),
                127 + 100 * np.cos(xx / 13.0 - yy / (23.0 + 3 * k)),
            ],
            axis=-1,
        )
        img = img + rng.normal(0, 10, img.shape)
        for _ in range(6):
            x0, y0 = rng.integers(0, width - 80), rng.integers(0, height - 80)
            img[y0 : y0 + 80, x0 : x0 + 80] = rng.integers(0, 256, 3)
        buf = io.BytesIO()
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(buf, format="JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def make_video(seed: int = 0) -> bytes:
    """A 4 s 320x240 30 fps H.264 MP4 (yuv420p, x264 defaults) of a moving pattern and box."""
    import av

    rng = np.random.default_rng(seed)
    width, height = VIDEO_SIZE
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack(
        [127 + 100 * np.sin(xx / 17.0), 127 + 100 * np.cos(yy / 11.0), 127 + 100 * np.sin((xx - yy) / 23.0)],
        axis=-1,
    )
    base = np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=VIDEO_FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for k in range(VIDEO_SECONDS * VIDEO_FPS):
            img = np.roll(base, (2 * k, 3 * k), axis=(0, 1)).copy()
            x0, y0 = (7 * k) % (width - 40), (5 * k) % (height - 40)
            img[y0 : y0 + 40, x0 : x0 + 40] = (255 - (3 * k) % 256, (5 * k) % 256, 128)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


def data_url(data: bytes, media_type: str) -> str:
    return f"data:{media_type};base64," + base64.b64encode(data).decode()


@dataclass(frozen=True)
class Workload:
    images: tuple[str, str]
    video: str
    num_frames: int
    max_tokens: int
    ignore_eos: bool

    def body(self, kind: str, index: int) -> dict:
        head = f"Request {index}."
        if kind == "image2":
            content = [
                {"type": "text", "text": f"{head} Here is the first picture:"},
                {"type": "image_url", "image_url": {"url": self.images[0]}},
                {"type": "text", "text": "and the second one:"},
                {"type": "image_url", "image_url": {"url": self.images[1]}},
                {"type": "text", "text": "What is different between them?"},
            ]
        elif kind == "video":
            content = [
                {"type": "text", "text": f"{head} Watch this clip:"},
                {"type": "video_url", "video_url": {"url": self.video, "num_frames": self.num_frames}},
                {"type": "text", "text": "What happens at the beginning, in the middle and at the end?"},
            ]
        elif kind == "text":
            content = [
                {
                    "type": "text",
                    "text": f"{head} A video is a sequence of frames and every frame is an image. "
                    "Explain how a model that reads interleaved images and text can answer questions about "
                    "a video, a set of photos and a 3D scene with the same weights.",
                }
            ]
        else:
            raise ValueError(kind)
        body = {
            "model": SERVED_NAME,
            "messages": [{"role": "user", "content": content}],
            "max_tokens": self.max_tokens,
            "temperature": 0,
            "seed": 0,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if self.ignore_eos:
            body["ignore_eos"] = True
        return body


def plan(requests_per_type: int, types: tuple[str, ...]) -> list[tuple[str, int]]:
    """The request order: types interleaved, each request numbered."""
    order = []
    for i in range(requests_per_type):
        for kind in types:
            order.append((kind, len(order)))
    return order


# --------------------------------------------------------------------------------------------------
# load generator


@dataclass
class Result:
    kind: str
    ok: bool
    e2e: float = 0.0
    ttft: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str = ""


async def one_request(client: httpx.AsyncClient, url: str, body: dict, kind: str) -> Result:
    t0 = time.perf_counter()
    ttft = None
    usage = None
    try:
        async with client.stream("POST", url, json=body) as response:
            if response.status_code != 200:
                text = (await response.aread()).decode(errors="replace")
                return Result(kind, False, time.perf_counter() - t0, error=f"HTTP {response.status_code}: {text[:300]}")
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                payload = line[5:].strip()
                if payload == "[DONE]":
                    break
                chunk = json.loads(payload)
                if "error" in chunk:
                    return Result(kind, False, time.perf_counter() - t0, error=str(chunk["error"])[:300])
                if ttft is None:
                    for choice in chunk.get("choices") or ():
                        if (choice.get("delta") or {}).get("content"):
                            ttft = time.perf_counter() - t0
                            break
                if chunk.get("usage"):
                    usage = chunk["usage"]
    except (httpx.HTTPError, json.JSONDecodeError) as exc:
        return Result(kind, False, time.perf_counter() - t0, error=f"{type(exc).__name__}: {exc}")
    e2e = time.perf_counter() - t0
    if usage is None:
        return Result(kind, False, e2e, ttft, error="no usage chunk")
    return Result(
        kind,
        True,
        e2e,
        ttft if ttft is not None else e2e,
        int(usage.get("prompt_tokens") or 0),
        int(usage.get("completion_tokens") or 0),
    )


async def run_load(base_url: str, workload: Workload, order: list[tuple[str, int]], concurrency: int) -> tuple[list[Result], float]:
    """Send `order` with `concurrency` requests in flight; returns the results and the wall time."""
    url = base_url + "/v1/chat/completions"
    bodies = [(kind, workload.body(kind, i)) for kind, i in order]
    results: list[Result | None] = [None] * len(bodies)
    next_index = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=httpx.Timeout(600.0), limits=limits) as client:

        async def worker() -> None:
            nonlocal next_index
            while next_index < len(bodies):
                i = next_index
                next_index += 1
                kind, body = bodies[i]
                results[i] = await one_request(client, url, body, kind)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    return [r for r in results if r is not None], wall


def warm_up(base_url: str, workload: Workload, types: tuple[str, ...]) -> list[Result]:
    """One request of each type, one at a time (not measured)."""
    order = [(kind, 100_000 + i) for i, kind in enumerate(types)]
    results, _ = asyncio.run(run_load(base_url, workload, order, 1))
    return results


# --------------------------------------------------------------------------------------------------
# statistics


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


@dataclass
class RoundStats:
    server: str
    round: int
    start_s: float
    wall_s: float
    requests: int
    errors: int
    req_per_s: float
    out_tok_per_s: float
    ttft_p50: float
    ttft_p99: float
    e2e_p50: float
    e2e_p99: float
    per_type: dict = field(default_factory=dict)
    scheduler: dict = field(default_factory=dict)
    cpu_s: dict = field(default_factory=dict)
    first_errors: list = field(default_factory=list)


def summarize(server: str, rnd: int, start_s: float, results: list[Result], wall: float, scheduler: dict,
              cpu_s: dict) -> RoundStats:
    ok = [r for r in results if r.ok]
    per_type = {}
    for kind in TYPES:
        rs = [r for r in ok if r.kind == kind]
        if not rs:
            continue
        per_type[kind] = {
            "n": len(rs),
            "prompt_tokens": statistics.mean(r.prompt_tokens for r in rs),
            "completion_tokens": statistics.mean(r.completion_tokens for r in rs),
            "ttft_p50": pct([r.ttft for r in rs], 50),
            "e2e_p50": pct([r.e2e for r in rs], 50),
            "e2e_p99": pct([r.e2e for r in rs], 99),
        }
    return RoundStats(
        server=server,
        round=rnd,
        start_s=start_s,
        wall_s=wall,
        requests=len(results),
        errors=len(results) - len(ok),
        req_per_s=len(ok) / wall if wall else float("nan"),
        out_tok_per_s=sum(r.completion_tokens for r in ok) / wall if wall else float("nan"),
        ttft_p50=pct([r.ttft for r in ok], 50),
        ttft_p99=pct([r.ttft for r in ok], 99),
        e2e_p50=pct([r.e2e for r in ok], 50),
        e2e_p99=pct([r.e2e for r in ok], 99),
        per_type=per_type,
        scheduler=scheduler,
        cpu_s=cpu_s,
        first_errors=[f"{r.kind}: {r.error}" for r in results if not r.ok][:3],
    )


METRICS = ("req_per_s", "out_tok_per_s", "ttft_p50", "ttft_p99", "e2e_p50", "e2e_p99")


def median_of_rounds(rounds: list[RoundStats]) -> dict:
    return {m: statistics.median(getattr(r, m) for r in rounds) for m in METRICS}


# --------------------------------------------------------------------------------------------------
# report


def machine_info() -> dict:
    def sh(cmd: str) -> str:
        try:
            return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=10).stdout.strip()
        except Exception:
            return ""

    info = {
        "date": sh("date"),
        "nproc": sh("nproc"),
        "cpu": sh("lscpu | grep 'Model name' | sed 's/Model name: *//'"),
        "memory": sh("free -g | awk '/Mem:/ {print $2 \" GiB\"}'"),
        "load_before": sh("cat /proc/loadavg"),
        "python": platform.python_version(),
    }
    try:
        import torch

        info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else ""
    except Exception:
        info["cuda"] = ""
    return info


def row(name: str, values: dict, extra: str = "") -> str:
    return (
        f"{name:<18} {values['req_per_s']:>7.2f} {values['out_tok_per_s']:>9.1f} "
        f"{values['ttft_p50'] * 1000:>9.0f} {values['ttft_p99'] * 1000:>9.0f} "
        f"{values['e2e_p50'] * 1000:>9.0f} {values['e2e_p99'] * 1000:>9.0f}{extra}"
    )


HEADER = (
    f"{'server':<18} {'req/s':>7} {'out tok/s':>9} {'TTFT p50':>9} {'TTFT p99':>9} "
    f"{'e2e p50':>9} {'e2e p99':>9}   (latencies in ms)"
)


def print_report(all_rounds: list[RoundStats], kinds: list[ServerKind]) -> dict:
    print()
    print("per round")
    print(HEADER + "  start s  errors  CPU s during the load: per process")
    print("-" * (len(HEADER) + 17))
    for r in all_rounds:
        cpu = " ".join(f"{k} {v:.1f}" for k, v in sorted(r.cpu_s.items(), key=lambda kv: -kv[1]) if v >= 0.05)
        print(row(f"{r.server} r{r.round}", asdict(r), f"  {r.start_s:>7.1f}  {r.errors:>6}  {cpu}"))
    print()
    print("per type (all rounds pooled by median of round values)")
    print(f"{'server':<14} {'type':<7} {'prompt tok':>10} {'out tok':>8} {'TTFT p50':>9} {'e2e p50':>9} {'e2e p99':>9}")
    for kind in kinds:
        rs = [r for r in all_rounds if r.server == kind.key]
        for t in TYPES:
            vals = [r.per_type[t] for r in rs if t in r.per_type]
            if not vals:
                continue
            med = {k: statistics.median(v[k] for v in vals) for k in vals[0]}
            print(
                f"{kind.key:<14} {t:<7} {med['prompt_tokens']:>10.0f} {med['completion_tokens']:>8.1f} "
                f"{med['ttft_p50'] * 1000:>9.0f} {med['e2e_p50'] * 1000:>9.0f} {med['e2e_p99'] * 1000:>9.0f}"
            )
    summary = {}
    print()
    print("summary (median of rounds)")
    print(HEADER)
    print("-" * len(HEADER))
    for kind in kinds:
        rs = [r for r in all_rounds if r.server == kind.key]
        if rs:
            summary[kind.key] = median_of_rounds(rs)
            print(row(kind.key, summary[kind.key]))
    ratios = {}
    if "ours" in summary and "vllm" in summary:
        a, b = summary["ours"], summary["vllm"]
        ratios = {m: (a[m] / b[m] if b[m] else float("nan")) for m in METRICS}
        print(
            "ratio ours/vllm: "
            f"req/s {ratios['req_per_s']:.2f}  out tok/s {ratios['out_tok_per_s']:.2f}  "
            f"TTFT p50 {ratios['ttft_p50']:.2f} p99 {ratios['ttft_p99']:.2f}  "
            f"e2e p50 {ratios['e2e_p50']:.2f} p99 {ratios['e2e_p99']:.2f}  "
            "(throughput: >1 ours faster; latency: <1 ours faster)"
        )
    return {"summary": summary, "ratios": ratios}


# --------------------------------------------------------------------------------------------------
# profiling


def start_py_spy(server, out_dir: Path, tag: str):
    """`py-spy record` (collapsed stacks, all processes of the server) during the measured load."""
    import shutil

    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{tag}.collapsed.txt"
    proc = subprocess.Popen(
        [exe, "record", "--pid", str(server.process.pid), "--subprocesses", "--rate", "200",
         "--format", "raw", "--output", str(out), "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)  # let it attach before the load starts
    return proc


def stop_py_spy(proc) -> None:
    import signal

    if proc is None:
        return
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# --------------------------------------------------------------------------------------------------
# main


def resolve_model(args: argparse.Namespace) -> str:
    if args.model:
        return args.model
    from model_adapter.checkpoint import ensure_tiny_checkpoint, write_checkpoint

    cache = ROOT / ".cache" / "checkpoints"
    if args.size == "tiny":
        return str(ensure_tiny_checkpoint(cache))
    target = cache / f"random-{args.size}-seed0"
    if not (target / "config.json").exists():
        print(f"writing a random-weight {args.size} checkpoint to {target} ...", file=sys.stderr, flush=True)
        tmp = Path(tempfile.mkdtemp(dir=cache, prefix=f".{args.size}-"))
        write_checkpoint(tmp, args.size, 0)
        tmp.rename(target)
    return str(target)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    try:
        import torch

        cuda = torch.cuda.is_available()
    except Exception:
        cuda = False
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=12, help="requests of EACH type per round (default 12)")
    p.add_argument("--concurrency", type=int, default=4, help="requests in flight (default 4)")
    p.add_argument("--rounds", type=int, default=3, help="rounds; each starts every server once (default 3)")
    p.add_argument("--max-tokens", type=int, default=32, help="max_tokens of every request (default 32)")
    p.add_argument("--model", help="checkpoint folder (default: built from --size)")
    p.add_argument("--size", choices=("tiny", "0.5b", "7b"), default="tiny",
                   help="random-weight checkpoint to build when --model is not given (default tiny)")
    p.add_argument("--quick", action="store_true", help="smallest run: 1 round, 3 per type, concurrency 2, 16 tokens")
    p.add_argument("--json", type=Path, help="write the results to this file")
    p.add_argument("--servers", default=None,
                   help="comma-separated subset of ours,vllm,vllm-builtin (default: ours,vllm; "
                   "plus vllm-builtin on CUDA)")
    p.add_argument("--dtype", default="bfloat16" if cuda else "float32")
    p.add_argument("--max-model-len", type=int, default=8192)
    p.add_argument("--gpu-memory-utilization", type=float, default=0.85 if cuda else 0.1)
    p.add_argument("--enforce-eager", action=argparse.BooleanOptionalAction, default=not cuda,
                   help="default: on for CPU, off on CUDA")
    p.add_argument("--prefix-caching", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--max-num-seqs", type=int, default=32, help="given to both servers (default 32)")
    p.add_argument("--num-frames", type=int, default=8)
    p.add_argument("--ignore-eos", action=argparse.BooleanOptionalAction, default=True,
                   help="send ignore_eos (vLLM honours it, our server ignores it)")
    p.add_argument("--py-spy", type=Path, metavar="DIR",
                   help="record py-spy profiles (collapsed stacks of every server process) during each load into DIR")
    p.add_argument("--log-dir", type=Path, default=ROOT / ".cache" / "bench-serve" / "logs")
    args = p.parse_args(argv)
    args.cuda = cuda
    if args.quick:
        args.rounds, args.requests, args.concurrency, args.max_tokens = 1, 3, 2, 16
    if args.servers is None:
        args.servers = "ours,vllm,vllm-builtin" if cuda else "ours,vllm"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        kinds = [SERVER_KINDS[s.strip()] for s in args.servers.split(",") if s.strip()]
    except KeyError as exc:
        print(f"unknown server {exc}; choose from {sorted(SERVER_KINDS)}", file=sys.stderr)
        return 2
    if VLLM_BUILTIN in kinds and not args.cuda:
        print("vllm-builtin needs CUDA (stock llava.py imports torchvision via pixtral): skipped", file=sys.stderr)
        kinds.remove(VLLM_BUILTIN)

    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    info = machine_info()
    model = resolve_model(args)
    t0 = time.perf_counter()
    images = make_images()
    video = make_video()
    workload = Workload(
        images=(data_url(images[0], "image/jpeg"), data_url(images[1], "image/jpeg")),
        video=data_url(video, "video/mp4"),
        num_frames=args.num_frames,
        max_tokens=args.max_tokens,
        ignore_eos=args.ignore_eos,
    )
    opts = EngineOptions(
        model=model,
        dtype=args.dtype,
        max_model_len=args.max_model_len,
        gpu_memory_utilization=args.gpu_memory_utilization,
        enforce_eager=args.enforce_eager,
        prefix_caching=args.prefix_caching,
        max_num_seqs=args.max_num_seqs,
        num_frames=args.num_frames,
    )
    print(f"serve benchmark  {info['date']}  nproc {info['nproc']}  {info['cpu']}  {info['memory']}  "
          f"{'cuda ' + info['cuda'] if info['cuda'] else 'no CUDA'}  load {info['load_before']}")
    print(f"model {model}")
    print(f"engine: dtype {opts.dtype}, max_model_len {opts.max_model_len}, enforce_eager {opts.enforce_eager}, "
          f"memory fraction {opts.gpu_memory_utilization}, prefix caching {opts.prefix_caching}, "
          f"max_num_seqs {opts.max_num_seqs}, seed {opts.seed}")
    print(f"workload: {args.requests} x {'/'.join(TYPES)} per round, concurrency {args.concurrency}, "
          f"max_tokens {args.max_tokens}, ignore_eos {args.ignore_eos}, {args.rounds} round(s); "
          f"images 2 x {IMAGE_SIZE[0]}x{IMAGE_SIZE[1]} JPEG ({len(images[0]) // 1024}+{len(images[1]) // 1024} KiB), "
          f"video {VIDEO_SECONDS} s {VIDEO_SIZE[0]}x{VIDEO_SIZE[1]} H.264 ({len(video) // 1024} KiB), "
          f"{args.num_frames} frames  (media built in {time.perf_counter() - t0:.1f} s)")
    print("servers (each started once per round, never two at a time): "
          + "; ".join(f"{k.key} = {k.label}" for k in kinds), flush=True)

    all_rounds: list[RoundStats] = []
    failed = False
    for rnd in range(1, args.rounds + 1):
        for kind in kinds:
            types = TYPES if kind.video else tuple(t for t in TYPES if t != "video")
            order = plan(args.requests, types)
            print(f"round {rnd}: starting {kind.key} ...", end=" ", flush=True)
            server = start_server(kind, opts, args.log_dir, f"r{rnd}")
            try:
                print(f"ready in {server.start_seconds:.1f} s; warm-up ...", end=" ", flush=True)
                warm = warm_up(server.base_url, workload, types)
                bad = [r for r in warm if not r.ok]
                if bad:
                    raise RuntimeError(f"{kind.key} warm-up failed: {bad[0].kind}: {bad[0].error}")
                print(f"{len(order)} requests ...", end=" ", flush=True)
                spy = start_py_spy(server, args.py_spy, f"{kind.key}-r{rnd}") if args.py_spy else None
                cpu0 = server.cpu_seconds()
                results, wall = asyncio.run(run_load(server.base_url, workload, order, args.concurrency))
                cpu1 = server.cpu_seconds()
                stop_py_spy(spy)
            finally:
                server.stop()
            cpu_s = {k: round(cpu1[k] - cpu0.get(k, 0.0), 2) for k in cpu1}
            stats = summarize(kind.key, rnd, server.start_seconds, results, wall, server.scheduler, cpu_s)
            all_rounds.append(stats)
            print(f"{wall:.1f} s, {stats.req_per_s:.2f} req/s, {stats.errors} errors", flush=True)
            if stats.errors:
                failed = True
                for err in stats.first_errors:
                    print(f"  error: {err}", flush=True)

    report = print_report(all_rounds, kinds)
    info["load_after"] = open("/proc/loadavg").read().strip()
    print(f"load before {info['load_before']}  after {info['load_after']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "machine": info,
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "engine": asdict(opts),
            "rounds": [asdict(r) for r in all_rounds],
            **report,
        }
        args.json.write_text(json.dumps(payload, indent=2))
        print(f"wrote {args.json}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
