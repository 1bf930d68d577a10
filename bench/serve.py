"""Serving benchmark: our `interleave-serve` versus vLLM's own OpenAI server with our plugin.

Both servers run the same checkpoint with the same engine arguments (dtype, max_model_len,
enforce_eager, memory fraction, prefix caching, max_num_seqs, seed) and get the same workload from
one async load generator (aiohttp, streaming SSE with `stream_options.include_usage`; aiohttp's C
HTTP parser keeps the generator's own CPU low: on 2 cores it shares them with the server, see
`load_client`):

- `image2`: two 640x480 JPEG images (data: URLs) between text parts,
- `video`:  one 4 s 320x240 H.264 clip (data: URL) as `video_url` with `num_frames` 8,
- `text`:   text only,

`--requests` of each type, interleaved (image2, video, text, image2, ...), at `--concurrency`
requests in flight, temperature 0, seed 0, `max_tokens` and `ignore_eos` (vLLM's sampling extra,
which both servers honour; the per-type table shows the output tokens each server actually
produced). Every request starts with its own number, so prefix caching shares only the system
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

The `engine` column (`bench/_engine.py`, a subprocess per round) sends the same workload straight to
`AsyncLLM` in-process, built with exactly our server's engine arguments: prompts, decoded media and
media keys (`multi_modal_uuids`) are prepared by our own pipeline BEFORE the clock starts, so it has
no HTTP, no JSON, no media work: the limit any HTTP layer can reach. `ratio ours/engine` compares
with it.

`--workload chat`: multi-turn conversations as a chat UI sends them, every turn resending the whole
conversation with its media (each conversation: one 60 s 1280x720 H.264 clip at x264's default GOP,
sampled at 16 frames, and two 640x480 JPEGs, unique per conversation; 3 turns; the assistant turns
are fixed texts so every server gets identical bytes). Reported per turn: TTFT and e2e (median over
conversations and rounds), the ratios ours/vLLM and ours/engine per turn, and our media cache's
hit rate (from /metrics) and CPU seconds per process.

    python bench/serve.py --quick                       # 1 round, 3 requests per type, concurrency 2
    python bench/serve.py                               # 3 rounds, 12 per type, concurrency 4
    python bench/serve.py --workload chat               # 3 rounds of 3 conversations x 3 turns
    python bench/serve.py --workload chat --quick       # 1 round, 1 conversation of a 10 s 480p clip
    python bench/serve.py --size 0.5b --json out.json   # random weights at the real 0.5B size (GPU)
"""

from __future__ import annotations

import argparse
import asyncio
import base64
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

import aiohttp  # noqa: E402
import httpx  # noqa: E402
import numpy as np  # noqa: E402

from bench._servers import (  # noqa: E402
    ENGINE,
    OURS,
    SERVED_NAME,
    VLLM,
    VLLM_BUILTIN,
    EngineOptions,
    ServerKind,
    start_server,
)

TYPES = ("image2", "video", "text")
SERVER_KINDS: dict[str, ServerKind] = {k.key: k for k in (OURS, VLLM, VLLM_BUILTIN, ENGINE)}
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
    for _ in range(requests_per_type):
        for kind in types:
            order.append((kind, len(order)))
    return order


# --------------------------------------------------------------------------------------------------
# chat workload: multi-turn conversations, every turn resending the whole conversation

CHAT_QUESTIONS = (
    "Here is a clip and two photos. Describe what happens in the clip.",
    "Which of the two photos matches the end of the clip better, and why?",
    "Summarise the whole conversation in one sentence.",
)
CHAT_REPLIES = (
    "The clip shows a textured pattern scrolling while a coloured box moves across it.",
    "The second photo is closer to the end of the clip: its colours and the box position match.",
)
CHAT_IMAGE_SIZE = (640, 480)


@dataclass(frozen=True)
class ChatWorkload:
    """Conversations of `turns` turns; turn t (1-based) sends the first user message (text, the
    video, the two images), then for every earlier turn the fixed assistant reply and the next
    question. Identical bytes for every server.

    conversations: per conversation (video data: URL, (image data: URL, image data: URL)).
    """

    conversations: tuple[tuple[str, tuple[str, str]], ...]
    num_frames: int
    turns: int
    max_tokens: int
    ignore_eos: bool

    def messages(self, conv: int, turn: int) -> list[dict]:
        video, images = self.conversations[conv]
        first = [
            {"type": "text", "text": f"Conversation {conv}. {CHAT_QUESTIONS[0]}"},
            {"type": "video_url", "video_url": {"url": video, "num_frames": self.num_frames}},
            {"type": "text", "text": "First photo:"},
            {"type": "image_url", "image_url": {"url": images[0]}},
            {"type": "text", "text": "Second photo:"},
            {"type": "image_url", "image_url": {"url": images[1]}},
        ]
        messages = [{"role": "user", "content": first}]
        for t in range(1, turn):
            messages.append({"role": "assistant", "content": CHAT_REPLIES[(t - 1) % len(CHAT_REPLIES)]})
            messages.append({"role": "user", "content": CHAT_QUESTIONS[t % len(CHAT_QUESTIONS)]})
        return messages

    def body(self, conv: int, turn: int) -> dict:
        body = {
            "model": SERVED_NAME,
            "messages": self.messages(conv, turn),
            "max_tokens": self.max_tokens,
            "temperature": 0,
            "seed": 0,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if self.ignore_eos:
            body["ignore_eos"] = True
        return body


def chat_clip(args: argparse.Namespace, seed: int) -> bytes:
    """The chat clip of conversation seed `seed` (H.264, x264 `--chat-preset`, default GOP), encoded
    once into the media cache folder."""
    from bench.video import encode_clip

    width, height = args.chat_video_size
    cache = ROOT / ".cache" / "bench-media"
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"chat-{args.chat_video_seconds}s-{width}x{height}-{args.chat_preset}-seed{seed}.mp4"
    if not path.exists():
        print(f"encoding {path.name} ...", file=sys.stderr, flush=True)
        encode_clip(path, args.chat_video_seconds, width, height, None, args.chat_preset, seed=seed)
    return path.read_bytes()


def build_chat(args: argparse.Namespace) -> ChatWorkload:
    """The chat workload of `args` (unique media per conversation: seeds 1..N)."""
    conversations = []
    for c in range(args.conversations):
        video = chat_clip(args, seed=c + 1)
        images = make_images(seed=100 + c)
        conversations.append(
            (
                data_url(video, "video/mp4"),
                (data_url(images[0], "image/jpeg"), data_url(images[1], "image/jpeg")),
            )
        )
    return ChatWorkload(tuple(conversations), args.chat_frames, args.turns, args.max_tokens, args.ignore_eos)


def chat_warmup_workload(workload: Workload, args: argparse.Namespace) -> ChatWorkload:
    """A 2-turn conversation on the mixed workload's small media (never the measured media, so the
    measured first turns find no cache warm)."""
    return ChatWorkload(
        ((workload.video, workload.images),), min(args.chat_frames, 8), 2, args.max_tokens, args.ignore_eos
    )


async def run_chat(base_url: str, chat: ChatWorkload, concurrency: int) -> tuple[list[Result], float]:
    """Every conversation turn by turn (a turn starts when the previous answer is complete),
    `concurrency` conversations at a time. Result.kind is ``turn1``, ``turn2``, ..."""
    url = base_url + "/v1/chat/completions"
    results: list[Result] = []
    pending = list(range(len(chat.conversations)))
    async with load_client(concurrency) as client:

        async def worker() -> None:
            while pending:
                conv = pending.pop(0)
                for turn in range(1, chat.turns + 1):
                    results.append(await one_request(client, url, chat.body(conv, turn), f"turn{turn}"))

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    return results, wall


def scrape_cache(base_url: str) -> dict[str, float]:
    """Our media cache counters from /metrics (hits and misses summed over kinds); {} if absent."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        text = httpx.get(base_url + "/metrics", timeout=10).text
    except httpx.HTTPError:
        return {}
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            for what in ("hits", "misses", "evictions"):
                if sample.name == f"interleave_media_cache_{what}_total":
                    out[what] = out.get(what, 0.0) + sample.value
            if sample.name == "interleave_media_cache_bytes":
                out["bytes"] = sample.value
    return out


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


def load_client(concurrency: int) -> aiohttp.ClientSession:
    """The load generator's HTTP client: `concurrency` kept-alive connections, 600 s per request.

    aiohttp rather than httpx (which the rest of the project uses) because the generator runs on
    the machine it measures: with httpx's pure-Python HTTP stack it used 0.3 CPU s per round of 36
    streamed requests on 2 cores, with aiohttp 0.1-0.15 s: CPU that the engine of the server under
    test would otherwise have (the engine column has no client at all). vLLM's own serving
    benchmark uses aiohttp for the same reason.
    """
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=concurrency),
        timeout=aiohttp.ClientTimeout(total=600.0),
    )


async def one_request(client: aiohttp.ClientSession, url: str, body: dict, kind: str) -> Result:
    """POST one streaming chat request; its latencies and usage (or the error)."""
    t0 = time.perf_counter()
    ttft = None
    usage = None
    try:
        async with client.post(url, json=body) as response:
            if response.status != 200:
                text = await response.text(errors="replace")
                return Result(
                    kind, False, time.perf_counter() - t0, error=f"HTTP {response.status}: {text[:300]}"
                )
            async for raw in response.content:  # one line at a time
                if not raw.startswith(b"data:"):
                    continue
                payload = raw[5:].strip()
                if payload == b"[DONE]":
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
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:  # ValueError: JSON, a line too long
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


async def run_load(
    base_url: str, workload: Workload, order: list[tuple[str, int]], concurrency: int
) -> tuple[list[Result], float]:
    """Send `order` with `concurrency` requests in flight; returns the results and the wall time."""
    url = base_url + "/v1/chat/completions"
    bodies = [(kind, workload.body(kind, i)) for kind, i in order]
    results: list[Result | None] = [None] * len(bodies)
    next_index = 0
    async with load_client(concurrency) as client:

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
    cache: dict = field(default_factory=dict)


def summarize(
    server: str, rnd: int, start_s: float, results: list[Result], wall: float, scheduler: dict, cpu_s: dict
) -> RoundStats:
    ok = [r for r in results if r.ok]
    per_type = {}
    for kind in result_kinds(results):
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


def result_kinds(results) -> list[str]:
    """The request types in `results`: TYPES order, then turn1, turn2, ..."""
    kinds = {r.kind for r in results}
    ordered = [t for t in TYPES if t in kinds]
    return ordered + sorted(kinds - set(ordered), key=lambda k: (len(k), k))


METRICS = ("req_per_s", "out_tok_per_s", "ttft_p50", "ttft_p99", "e2e_p50", "e2e_p99")


def median_of_rounds(rounds: list[RoundStats]) -> dict:
    return {m: statistics.median(getattr(r, m) for r in rounds) for m in METRICS}


# --------------------------------------------------------------------------------------------------
# report


def machine_info() -> dict:
    def sh(cmd: str) -> str:
        try:
            return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=10).stdout.strip()
        except Exception:  # noqa: BLE001 - machine facts are best effort
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
    except Exception:  # noqa: BLE001 - machine facts are best effort
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
    print(
        f"{'server':<14} {'type':<7} {'prompt tok':>10} {'out tok':>8} {'TTFT p50':>9} {'e2e p50':>9} {'e2e p99':>9}"
    )
    all_types = result_kinds([Result(t, True) for r in all_rounds for t in r.per_type])
    for kind in kinds:
        rs = [r for r in all_rounds if r.server == kind.key]
        for t in all_types:
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
    all_ratios: dict[str, dict] = {}
    for base in ("vllm", "engine"):
        if "ours" not in summary or base not in summary:
            continue
        a, b = summary["ours"], summary[base]
        r = {m: (a[m] / b[m] if b[m] else float("nan")) for m in METRICS}
        all_ratios[base] = r
        print(
            f"ratio ours/{base}: "
            f"req/s {r['req_per_s']:.2f}  out tok/s {r['out_tok_per_s']:.2f}  "
            f"TTFT p50 {r['ttft_p50']:.2f} p99 {r['ttft_p99']:.2f}  "
            f"e2e p50 {r['e2e_p50']:.2f} p99 {r['e2e_p99']:.2f}  "
            "(throughput: >1 ours faster; latency: <1 ours faster)"
        )
    report = {
        "summary": summary,
        "ratios": all_ratios.get("vllm", {}),
        "ratios_engine": all_ratios.get("engine", {}),
    }
    turns = [t for t in all_types if t.startswith("turn")]
    if turns:
        report["turns"] = print_turns(all_rounds, kinds, turns)
    cache = [r.cache for r in all_rounds if r.server == "ours" and r.cache]
    if cache:
        hits = sum(c.get("hits", 0.0) for c in cache)
        misses = sum(c.get("misses", 0.0) for c in cache)
        rate = hits / (hits + misses) if hits + misses else float("nan")
        report["media_cache"] = {"hits": hits, "misses": misses, "hit_rate": rate}
        print(f"ours media cache during the loads: {hits:.0f} hits, {misses:.0f} misses, hit rate {rate:.1%}")
    return report


def print_turns(all_rounds: list[RoundStats], kinds: list[ServerKind], turns: list[str]) -> dict:
    """The chat table: per server and turn the median over rounds of the per-round TTFT / e2e p50,
    then per turn the ratios ours/vllm and ours/engine."""
    table: dict[str, dict[str, dict[str, float]]] = {}
    print()
    print("chat, per turn (median of rounds of the per-round p50 over conversations)")
    print(f"{'server':<14} " + " ".join(f"{t + ' TTFT':>11} {t + ' e2e':>10}" for t in turns) + "   (ms)")
    for kind in kinds:
        rs = [r for r in all_rounds if r.server == kind.key]
        per = {}
        for t in turns:
            vals = [r.per_type[t] for r in rs if t in r.per_type]
            if vals:
                per[t] = {
                    "ttft_p50": statistics.median(v["ttft_p50"] for v in vals),
                    "e2e_p50": statistics.median(v["e2e_p50"] for v in vals),
                }
        if per:
            table[kind.key] = per
            print(
                f"{kind.key:<14} "
                + " ".join(
                    f"{per[t]['ttft_p50'] * 1000:>11.0f} {per[t]['e2e_p50'] * 1000:>10.0f}"
                    if t in per
                    else f"{'-':>11} {'-':>10}"
                    for t in turns
                )
            )
    ratios: dict[str, dict[str, dict[str, float]]] = {}
    for base in ("vllm", "engine"):
        if "ours" not in table or base not in table:
            continue
        ratios[base] = {}
        parts = []
        for t in turns:
            a, b = table["ours"].get(t), table[base].get(t)
            if not a or not b:
                continue
            ratios[base][t] = {m: a[m] / b[m] if b[m] else float("nan") for m in ("ttft_p50", "e2e_p50")}
            parts.append(f"{t} TTFT {ratios[base][t]['ttft_p50']:.2f} e2e {ratios[base][t]['e2e_p50']:.2f}")
        print(f"ratio ours/{base} per turn: " + "  ".join(parts) + "  (<1: ours faster)")
    return {"table": table, "ratios": ratios}


# --------------------------------------------------------------------------------------------------
# profiling


def start_py_spy(server, out_dir: Path, tag: str):
    """`py-spy record` (collapsed stacks, all processes of the server) during the measured load."""
    import shutil

    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{tag}.collapsed.txt"
    proc = subprocess.Popen(
        [
            exe,
            "record",
            "--pid",
            str(server.process.pid),
            "--subprocesses",
            "--rate",
            "200",
            "--format",
            "raw",
            "--output",
            str(out),
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
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


def _size(text: str) -> tuple[int, int]:
    width, _, height = text.lower().partition("x")
    return int(width), int(height)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    try:
        import torch

        cuda = torch.cuda.is_available()
    except Exception:  # noqa: BLE001 - torch missing or broken: the CPU defaults
        cuda = False
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--workload",
        choices=("mixed", "chat"),
        default="mixed",
        help="mixed: single requests of three types (default); chat: multi-turn conversations",
    )
    p.add_argument(
        "--requests", type=int, default=12, help="mixed: requests of EACH type per round (default 12)"
    )
    p.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help="requests (mixed) or conversations (chat) in flight (default 4 / 1)",
    )
    p.add_argument("--rounds", type=int, default=3, help="rounds; each starts every server once (default 3)")
    p.add_argument("--max-tokens", type=int, default=32, help="max_tokens of every request (default 32)")
    p.add_argument("--model", help="checkpoint folder (default: built from --size)")
    p.add_argument(
        "--size",
        choices=("tiny", "0.5b", "7b"),
        default="tiny",
        help="random-weight checkpoint to build when --model is not given (default tiny)",
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="smallest run: 1 round, 16 tokens; mixed: 3 per type, concurrency 2; chat: 1 "
        "conversation of a 10 s 854x480 clip",
    )
    p.add_argument("--json", type=Path, help="write the results to this file")
    p.add_argument(
        "--servers",
        default=None,
        help="comma-separated subset of ours,vllm,engine,vllm-builtin (default: ours,vllm,engine; "
        "plus vllm-builtin on CUDA for the mixed workload)",
    )
    p.add_argument("--dtype", default="bfloat16" if cuda else "float32")
    p.add_argument("--max-model-len", type=int, default=None, help="default 8192 (mixed), 16384 (chat)")
    p.add_argument("--gpu-memory-utilization", type=float, default=0.85 if cuda else 0.1)
    p.add_argument(
        "--enforce-eager",
        action=argparse.BooleanOptionalAction,
        default=not cuda,
        help="default: on for CPU, off on CUDA",
    )
    p.add_argument("--prefix-caching", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--max-num-seqs", type=int, default=32, help="given to every server (default 32)")
    p.add_argument(
        "--num-frames", type=int, default=8, help="mixed: frames of the video requests (default 8)"
    )
    p.add_argument(
        "--ignore-eos",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="send ignore_eos (vLLM's sampling extra; both servers honour it)",
    )
    chat = p.add_argument_group("chat workload")
    chat.add_argument("--conversations", type=int, default=3, help="conversations per round (default 3)")
    chat.add_argument("--turns", type=int, default=3, help="turns per conversation (default 3)")
    chat.add_argument(
        "--chat-frames", type=int, default=16, help="frames sampled from each clip (default 16)"
    )
    chat.add_argument(
        "--chat-video-seconds", type=int, default=None, help="clip length (default 60; --quick 10)"
    )
    chat.add_argument(
        "--chat-video-size",
        type=_size,
        default=None,
        help="clip WIDTHxHEIGHT (default 1280x720; --quick 854x480)",
    )
    chat.add_argument(
        "--chat-preset",
        default="medium",
        help="x264 preset of the clips (default medium = x264's default; GOP is x264's default)",
    )
    p.add_argument(
        "--py-spy",
        type=Path,
        metavar="DIR",
        help="record py-spy profiles (collapsed stacks of every server process) during each load into DIR",
    )
    p.add_argument("--log-dir", type=Path, default=ROOT / ".cache" / "bench-serve" / "logs")
    args = p.parse_args(argv)
    args.cuda = cuda
    chat_mode = args.workload == "chat"
    if args.quick:
        args.rounds, args.max_tokens = 1, 16
        if chat_mode:
            args.conversations = 1
            args.chat_video_seconds = args.chat_video_seconds or 10
            args.chat_video_size = args.chat_video_size or (854, 480)
        else:
            args.requests = 3
            args.concurrency = args.concurrency or 2
    args.concurrency = args.concurrency or (1 if chat_mode else 4)
    args.chat_video_seconds = args.chat_video_seconds or 60
    args.chat_video_size = args.chat_video_size or (1280, 720)
    args.max_model_len = args.max_model_len or (16384 if chat_mode else 8192)
    if args.servers is None:
        args.servers = "ours,vllm,engine,vllm-builtin" if cuda and not chat_mode else "ours,vllm,engine"
    return args


def engine_options(args: argparse.Namespace, model: str) -> EngineOptions:
    """The engine arguments every server of this run gets."""
    chat_mode = args.workload == "chat"
    return EngineOptions(
        model=model,
        dtype=args.dtype,
        max_model_len=args.max_model_len,
        gpu_memory_utilization=args.gpu_memory_utilization,
        enforce_eager=args.enforce_eager,
        prefix_caching=args.prefix_caching,
        max_num_seqs=args.max_num_seqs,
        num_frames=args.chat_frames if chat_mode else args.num_frames,
    )


def build_workload(args: argparse.Namespace) -> Workload:
    """The mixed workload's media (also the chat warm-up's): fixed seeds, identical every run."""
    images = make_images()
    video = make_video()
    return Workload(
        images=(data_url(images[0], "image/jpeg"), data_url(images[1], "image/jpeg")),
        video=data_url(video, "video/mp4"),
        num_frames=args.num_frames,
        max_tokens=args.max_tokens,
        ignore_eos=args.ignore_eos,
    )


def run_round(
    kind: ServerKind,
    rnd: int,
    args: argparse.Namespace,
    opts: EngineOptions,
    workload: Workload,
    chat: ChatWorkload | None,
) -> RoundStats:
    """Start `kind`, warm it up, run the measured load, stop it; the round's numbers."""
    from bench._engine import run_engine_round

    types = TYPES if kind.video else tuple(t for t in TYPES if t != "video")
    order = plan(args.requests, types)
    if kind is ENGINE:
        print(f"round {rnd}: engine in-process (bench/_engine.py) ...", end=" ", flush=True)
        out = run_engine_round(args, opts, args.log_dir, f"r{rnd}")
        results = [Result(**r) for r in out["results"]]
        stats = summarize(kind.key, rnd, out["start_s"], results, out["wall_s"], {}, out["cpu_s"])
        print(
            f"ready in {out['start_s']:.1f} s; {len(results)} requests in {out['wall_s']:.1f} s",
            end=" ",
            flush=True,
        )
        return stats
    print(f"round {rnd}: starting {kind.key} ...", end=" ", flush=True)
    server = start_server(kind, opts, args.log_dir, f"r{rnd}")
    cache0 = cache1 = {}
    try:
        print(f"ready in {server.start_seconds:.1f} s; warm-up ...", end=" ", flush=True)
        if chat is not None:
            warm, _ = asyncio.run(run_chat(server.base_url, chat_warmup_workload(workload, args), 1))
        else:
            warm = warm_up(server.base_url, workload, types)
        bad = [r for r in warm if not r.ok]
        if bad:
            raise RuntimeError(f"{kind.key} warm-up failed: {bad[0].kind}: {bad[0].error}")
        n = len(chat.conversations) * chat.turns if chat is not None else len(order)
        print(f"{n} requests ...", end=" ", flush=True)
        spy = start_py_spy(server, args.py_spy, f"{kind.key}-r{rnd}") if args.py_spy else None
        if kind is OURS:
            cache0 = scrape_cache(server.base_url)
        cpu0 = server.cpu_seconds()
        client0 = time.process_time()  # this process: the load generator's HTTP client
        if chat is not None:
            results, wall = asyncio.run(run_chat(server.base_url, chat, args.concurrency))
        else:
            results, wall = asyncio.run(run_load(server.base_url, workload, order, args.concurrency))
        cpu1 = server.cpu_seconds()
        client_cpu = time.process_time() - client0
        if kind is OURS:
            cache1 = scrape_cache(server.base_url)
        stop_py_spy(spy)
    finally:
        server.stop()
    cpu_s = {k: round(cpu1[k] - cpu0.get(k, 0.0), 2) for k in cpu1}
    cpu_s["client"] = round(client_cpu, 2)
    stats = summarize(kind.key, rnd, server.start_seconds, results, wall, server.scheduler, cpu_s)
    stats.cache = {k: cache1[k] - cache0.get(k, 0.0) for k in cache1 if k != "bytes"}
    if "bytes" in cache1:
        stats.cache["bytes"] = cache1["bytes"]
    return stats


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        kinds = [SERVER_KINDS[s.strip()] for s in args.servers.split(",") if s.strip()]
    except KeyError as exc:
        print(f"unknown server {exc}; choose from {sorted(SERVER_KINDS)}", file=sys.stderr)
        return 2
    if VLLM_BUILTIN in kinds and (not args.cuda or args.workload == "chat"):
        print(
            "vllm-builtin needs CUDA (stock llava.py imports torchvision via pixtral) and takes no video: "
            "skipped",
            file=sys.stderr,
        )
        kinds.remove(VLLM_BUILTIN)

    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    info = machine_info()
    model = resolve_model(args)
    t0 = time.perf_counter()
    workload = build_workload(args)
    chat = build_chat(args) if args.workload == "chat" else None
    opts = engine_options(args, model)
    print(
        f"serve benchmark  {info['date']}  nproc {info['nproc']}  {info['cpu']}  {info['memory']}  "
        f"{'cuda ' + info['cuda'] if info['cuda'] else 'no CUDA'}  load {info['load_before']}"
    )
    print(f"model {model}")
    print(
        f"engine: dtype {opts.dtype}, max_model_len {opts.max_model_len}, enforce_eager {opts.enforce_eager}, "
        f"memory fraction {opts.gpu_memory_utilization}, prefix caching {opts.prefix_caching}, "
        f"max_num_seqs {opts.max_num_seqs}, seed {opts.seed}"
    )
    if chat is None:
        print(
            f"workload mixed: {args.requests} x {'/'.join(TYPES)} per round, concurrency {args.concurrency}, "
            f"max_tokens {args.max_tokens}, ignore_eos {args.ignore_eos}, {args.rounds} round(s); "
            f"images 2 x {IMAGE_SIZE[0]}x{IMAGE_SIZE[1]} JPEG, video {VIDEO_SECONDS} s "
            f"{VIDEO_SIZE[0]}x{VIDEO_SIZE[1]} H.264, {args.num_frames} frames  "
            f"(media built in {time.perf_counter() - t0:.1f} s)"
        )
    else:
        width, height = args.chat_video_size
        mib = len(chat.conversations[0][0]) * 3 / 4 / 2**20
        print(
            f"workload chat: {args.conversations} conversation(s) x {args.turns} turns per round "
            f"(each turn resends everything), {args.concurrency} at a time, max_tokens {args.max_tokens}, "
            f"ignore_eos {args.ignore_eos}, {args.rounds} round(s); per conversation a "
            f"{args.chat_video_seconds} s {width}x{height} H.264 clip ({mib:.1f} MiB, x264 {args.chat_preset}, "
            f"default GOP) at {args.chat_frames} frames + 2 x {CHAT_IMAGE_SIZE[0]}x{CHAT_IMAGE_SIZE[1]} JPEG  "
            f"(media ready in {time.perf_counter() - t0:.1f} s)"
        )
    print(
        "servers (each started once per round, never two at a time): "
        + "; ".join(f"{k.key} = {k.label}" for k in kinds),
        flush=True,
    )

    all_rounds: list[RoundStats] = []
    failed = False
    for rnd in range(1, args.rounds + 1):
        for kind in kinds:
            stats = run_round(kind, rnd, args, opts, workload, chat)
            all_rounds.append(stats)
            print(f"{stats.wall_s:.1f} s, {stats.req_per_s:.2f} req/s, {stats.errors} errors", flush=True)
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
