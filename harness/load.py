"""A bounded mixed load for tests and benchmarks: chat requests with text, images, a video, a 3D scene,
streaming and not, sent concurrently with httpx; every outcome is recorded, nothing is retried.

Used by the reliability suite, the load-balancer test and the Ray test (one place for "send N mixed
requests at concurrency C and tell me what came back").
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from harness.media import encode_video, png_url, video_url

KINDS = ("text", "image", "images", "video", "scene")


def mixed_content(kind: str, k: int = 0, *, num_frames: int = 4) -> list[dict[str, Any]]:
    """The content parts of request ``k`` of ``kind`` (one of :data:`KINDS`); images differ by ``k``."""
    text = {"type": "text", "text": f"Request {k}: describe what you see."}
    color = (40 * (k % 6), 120, 200 - 20 * (k % 8))
    if kind == "text":
        return [text]
    if kind == "image":
        return [text, {"type": "image_url", "image_url": {"url": png_url(48, 32, color)}}]
    if kind == "images":
        return [
            {"type": "image_url", "image_url": {"url": png_url(40, 30, color)}},
            text,
            {"type": "image_url", "image_url": {"url": png_url(30, 40, (color[2], color[1], color[0]))}},
        ]
    if kind == "video":
        return [text, {"type": "video_url", "video_url": {"url": _clip(), "num_frames": num_frames}}]
    if kind == "scene":
        views = [png_url(32, 24, (60 * v, 90, 30 * k % 255)) for v in range(3)]
        return [
            {"type": "scene_views", "scene_views": {"urls": views, "labels": ["front", "left", "back"]}},
            text,
        ]
    raise ValueError(kind)


_CLIP: str | None = None


def _clip() -> str:
    """A 16-frame 96x64 H.264 clip as a data URL (encoded once per process)."""
    global _CLIP
    if _CLIP is None:
        _CLIP = video_url(encode_video(16, 8, size=(96, 64)))
    return _CLIP


def mixed_body(
    k: int, *, model: str | None = None, max_tokens: int = 8, stream: bool | None = None, **extra: Any
) -> dict[str, Any]:
    """Request ``k`` of the mixed load: kinds in turn, every other one streaming (unless ``stream``)."""
    body: dict[str, Any] = {
        "messages": [{"role": "user", "content": mixed_content(KINDS[k % len(KINDS)], k)}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": (k % 2 == 1) if stream is None else stream,
    }
    if model is not None:
        body["model"] = model
    body.update(extra)
    return body


@dataclass
class Outcome:
    """What one request got.

    Attributes:
        index: the request's number.
        status: HTTP status (0 if the connection failed).
        text: the generated text (streams: the content deltas joined).
        done: streams: ``data: [DONE]`` arrived; non-streaming: a complete JSON body arrived.
        error: an error body (HTTP or an SSE error event), or the transport error.
        headers: response headers.
        seconds: from send to the last byte.
        stream: whether it was a streaming request.
    """

    index: int
    status: int = 0
    text: str = ""
    done: bool = False
    error: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    stream: bool = False
    started: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.done and self.error is None


async def send_chat(client: httpx.AsyncClient, url: str, body: dict[str, Any], index: int = 0) -> Outcome:
    """POST one chat request (``url`` = ``.../v1/chat/completions``) and read it to the end."""
    out = Outcome(index, stream=bool(body.get("stream")))
    t0 = out.started = time.perf_counter()
    try:
        if body.get("stream"):
            async with client.stream("POST", url, json=body) as resp:
                out.status, out.headers = resp.status_code, dict(resp.headers)
                if resp.status_code != 200:
                    out.error = _json_or_text(await resp.aread())
                else:
                    async for line in resp.aiter_lines():
                        if not line.startswith("data: "):
                            continue
                        data = line[6:]
                        if data == "[DONE]":
                            out.done = True
                            break
                        event = json.loads(data)
                        if "error" in event:
                            out.error = event
                            continue
                        for choice in event.get("choices", []):
                            out.text += choice.get("delta", {}).get("content") or ""
        else:
            resp = await client.post(url, json=body)
            out.status, out.headers = resp.status_code, dict(resp.headers)
            payload = _json_or_text(resp.content)
            if resp.status_code == 200 and isinstance(payload, dict):
                out.text = "".join(c["message"]["content"] or "" for c in payload["choices"])
                out.done = True
            else:
                out.error = payload
    except httpx.HTTPError as exc:
        out.error = f"{type(exc).__name__}: {exc}"
    out.seconds = time.perf_counter() - t0
    return out


def _json_or_text(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


async def run_load(
    base_url: str,
    bodies: Sequence[dict[str, Any]],
    *,
    concurrency: int,
    timeout: float = 300.0,
    headers: dict[str, str] | None = None,
) -> list[Outcome]:
    """Send ``bodies`` to ``base_url``'s chat endpoint, ``concurrency`` at a time; outcomes in order.

    Args:
        base_url: ``http://host:port`` (``/v1/chat/completions`` is appended).
        timeout: seconds for each request (connect, read and write).
    """
    url = base_url.rstrip("/") + "/v1/chat/completions"
    sem = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=timeout, limits=limits, headers=headers) as client:

        async def one(k: int, body: dict[str, Any]) -> Outcome:
            async with sem:
                return await send_chat(client, url, body, k)

        return list(await asyncio.gather(*(one(k, b) for k, b in enumerate(bodies))))


def summary(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    """Counts by status, failures, and latency percentiles (seconds) of a load."""
    by_status: dict[int, int] = {}
    for o in outcomes:
        by_status[o.status] = by_status.get(o.status, 0) + 1
    lat = sorted(o.seconds for o in outcomes if o.ok)

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, int(p * len(lat)))] if lat else float("nan")

    return {
        "requests": len(outcomes),
        "ok": sum(o.ok for o in outcomes),
        "by_status": by_status,
        "p50_s": round(pct(0.5), 3),
        "p99_s": round(pct(0.99), 3),
    }
