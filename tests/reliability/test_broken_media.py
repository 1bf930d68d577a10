"""The broken-media corpus through the live server: no 5xx, no hang, and the server keeps serving.

163 broken files, generated here with fixed seeds by the mutations of `harness.mutate` (bit flips,
byte insertions and deletions, truncation, header fields overwritten) from valid PNG, JPEG, GIF and
WebP images and MP4 (index first and last), MKV and WebM clips. Each goes out as a data: URL in an
``image_url`` part, as the second of two ``scene_views`` or in a ``video_url`` part. Every answer
must be a 200 or a 400 ``invalid_media`` naming the part, within a bounded client timeout; the
server logs no unhandled error, and a normal request still succeeds afterwards.
"""

from __future__ import annotations

import asyncio
import collections
import time

import httpx
import numpy as np

from harness import mutate
from harness.media import data_url, png

FILES_PER_KIND = 20  # 8 kinds -> 160 files, plus the known bad ones below

KNOWN_BAD: tuple[tuple[str, list], ...] = (
    # A byte inserted into the sample description: PyAV gives a stream without a codec context
    # (the 500 of issue 8: the sampler read `.width` from None), index first and last.
    ("mp4-faststart", [("insert", 425, b"\x00")]),
    ("mp4-moov-last", [("insert", 6118, b"\x00")]),
    # A damaged VP9 clip that crashed FFmpeg's frame-threaded decoder (the whole server) after a seek.
    ("webm", [("flip", 1032776492, 4), ("truncate", 1435612990)]),
)
CONCURRENCY = 4  # well below the shared server's admission bound: no 503 for capacity
REQUEST_TIMEOUT_SECONDS = 120.0  # a hang, not a slow answer (2 busy shared cores)
NUM_FRAMES = 2

_MIME = {
    "png": "image/png",
    "jpeg": "image/jpeg",
    "gif": "image/gif",
    "webp": "image/webp",
    "mp4-faststart": "video/mp4",
    "mp4-moov-last": "video/mp4",
    "mkv": "video/x-matroska",
    "webm": "video/webm",
}


def broken_corpus() -> list[tuple[str, int, bytes]]:
    """(kind, k, broken bytes): KNOWN_BAD (k < 0), then FILES_PER_KIND files of every kind with
    mutations drawn from seed (kind index, k)."""
    samples = mutate.sample_files()
    corpus = [
        (kind, -1 - j, mutate.apply(samples[kind], ops, mutate.field_offsets(samples[kind], kind)))
        for j, (kind, ops) in enumerate(KNOWN_BAD)
    ]
    for i, kind in enumerate(mutate.IMAGE_KINDS + mutate.VIDEO_KINDS):
        data = samples[kind]
        fields = mutate.field_offsets(data, kind)
        for k in range(FILES_PER_KIND):
            rng = np.random.default_rng([i, k])
            ops = mutate.random_mutations(rng, int(rng.integers(1, 4)))
            corpus.append((kind, k, mutate.apply(data, ops, fields)))
    return corpus


def _part(kind: str, k: int, broken: bytes) -> tuple[dict, str]:
    """The content part carrying `broken`, and the param a 400 must name."""
    url = data_url(broken, _MIME[kind])
    if kind in mutate.VIDEO_KINDS:
        return {
            "type": "video_url",
            "video_url": {"url": url, "num_frames": NUM_FRAMES},
        }, "messages[0].content[1]"
    if k % 2 == 0:
        return {"type": "image_url", "image_url": {"url": url}}, "messages[0].content[1]"
    views = {"urls": [data_url(png(16, 16)), url]}
    return {"type": "scene_views", "scene_views": views}, "messages[0].content[1].scene_views.urls[1]"


def _body(part: dict) -> dict:
    return {
        "messages": [{"role": "user", "content": [{"type": "text", "text": "What is shown?"}, part]}],
        "max_tokens": 2,
        "temperature": 0,
    }


async def _send_corpus(base_url: str, corpus) -> list[dict]:
    limit = asyncio.Semaphore(CONCURRENCY)
    timeout = httpx.Timeout(REQUEST_TIMEOUT_SECONDS)

    async with httpx.AsyncClient(base_url=base_url, timeout=timeout) as client:

        async def one(kind: str, k: int, broken: bytes) -> dict:
            part, param = _part(kind, k, broken)
            async with limit:
                t0 = time.monotonic()
                try:
                    r = await client.post("/v1/chat/completions", json=_body(part))
                except httpx.TimeoutException:
                    return {"kind": kind, "k": k, "status": None, "error": "timeout", "param": param}
                out = {
                    "kind": kind,
                    "k": k,
                    "status": r.status_code,
                    "param": param,
                    "seconds": time.monotonic() - t0,
                }
                out["json"] = (
                    r.json() if r.headers.get("content-type", "").startswith("application/json") else None
                )
                return out

        return await asyncio.gather(*(one(*item) for item in corpus))


def test_broken_media_corpus_gives_no_5xx_and_no_hang(reliability_server):
    corpus = broken_corpus()
    assert len(corpus) >= 160
    assert len({broken for _, _, broken in corpus}) >= 150  # mutations rarely coincide
    log_start = len(reliability_server.log_text())
    results = asyncio.run(_send_corpus(reliability_server.base_url, corpus))

    hangs = [(r["kind"], r["k"]) for r in results if r["status"] is None]
    assert not hangs, f"no answer within {REQUEST_TIMEOUT_SECONDS:g} s: {hangs}"
    server_errors = [(r["kind"], r["k"], r["status"], r["json"]) for r in results if r["status"] >= 500]
    assert not server_errors, server_errors
    assert {r["status"] for r in results} <= {200, 400}
    for r in results:
        if r["status"] == 400:
            error = r["json"]["error"]
            assert error["code"] == "invalid_media", (r["kind"], r["k"], error)
            assert error["param"] == r["param"], (r["kind"], r["k"], error)
        else:
            assert r["json"]["choices"][0]["message"]["content"] is not None

    log = reliability_server.log_text()[log_start:]  # what the server wrote during the corpus
    assert "unhandled error" not in log and "Traceback" not in log, log[-8000:]

    # The server still serves an ordinary request, and is healthy.
    ok = httpx.post(
        reliability_server.base_url + "/v1/chat/completions",
        json=_body({"type": "image_url", "image_url": {"url": data_url(png(32, 24))}}),
        timeout=REQUEST_TIMEOUT_SECONDS,
    )
    assert ok.status_code == 200, ok.text
    assert httpx.get(reliability_server.base_url + "/health", timeout=10).status_code == 200

    by_kind = collections.defaultdict(collections.Counter)
    for r in results:
        by_kind[r["kind"]][r["status"]] += 1
    slowest = max(r["seconds"] for r in results)
    print(
        f"broken-media corpus: {len(results)} files, slowest answer {slowest:.1f} s,",
        {kind: dict(c) for kind, c in by_kind.items()},
    )
