"""The decoded-media cache on the live server (read from /metrics):

- a repeated video (same bytes: a data: URL, then again, then an http URL) is decoded once: the miss
  counter moves once, the hit counter after;
- the answer is identical with and without the cache: the cached turns give the greedy tokens and
  logprobs of the first (decoded) one, and so does a copy of the clip with other bytes and the same
  frames (remuxed: a miss, decoded fresh, new media keys for the engine);
- a different num_frames is a different entry;
- the cache's accounted bytes stay within its bound.
"""

from __future__ import annotations

import io

import av
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from harness.media import encode_video, video_url
from server.media.video import sample_video

MAX_TOKENS = 8


@pytest.fixture(scope="module")
def clip() -> bytes:
    """A clip no other e2e test sends (its own size and frame count), so the counters are ours."""
    return encode_video(40, 8, gop=8, size=(112, 80), marker=True)


def remuxed(data: bytes) -> bytes:
    """The same H.264 packets in a new MP4 (other metadata): other bytes, the same frames."""
    src = av.open(io.BytesIO(data))
    buf = io.BytesIO()
    dst = av.open(buf, "w", format="mp4")
    dst.metadata["title"] = "a copy"
    stream = src.streams.video[0]
    out = dst.add_stream_from_template(stream)
    for packet in src.demux(stream):
        if packet.dts is None:
            continue
        packet.stream = out
        dst.mux(packet)
    dst.close()
    src.close()
    return buf.getvalue()


def cache_counters(client) -> dict[str, float]:
    """interleave_media_cache_* samples from /metrics: hits/misses/evictions of kind video, bytes, capacity."""
    text = client.get("/metrics").text
    out = {"hits": 0.0, "misses": 0.0, "evictions": 0.0}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            for what in ("hits", "misses", "evictions"):
                if s.name == f"interleave_media_cache_{what}_total" and s.labels.get("kind") == "video":
                    out[what] = s.value
            if s.name == "interleave_media_cache_bytes":
                out["bytes"] = s.value
            if s.name == "interleave_media_cache_capacity_bytes":
                out["capacity"] = s.value
    return out


def ask(client, url: str, num_frames: int = 8) -> tuple[list[str], list[float], int]:
    """Greedy answer about the clip at `url`: tokens, their logprobs, prompt tokens."""
    body = {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What moves in this clip?"},
                    {"type": "video_url", "video_url": {"url": url, "num_frames": num_frames}},
                ],
            }
        ],
        "max_tokens": MAX_TOKENS,
        "temperature": 0,
        "logprobs": True,
        "top_logprobs": 2,
    }
    r = client.post("/v1/chat/completions", json=body)
    assert r.status_code == 200, r.text
    data = r.json()
    content = data["choices"][0]["logprobs"]["content"]
    return [t["token"] for t in content], [t["logprob"] for t in content], data["usage"]["prompt_tokens"]


def test_a_repeated_video_is_decoded_once_and_answers_the_same(client, clip, serve_media):
    data_url = video_url(clip)
    http_url = serve_media("/cache-clip.mp4", clip)
    copy = remuxed(clip)
    assert copy != clip
    assert np.array_equal(sample_video(copy, num_frames=8).frames, sample_video(clip, num_frames=8).frames)

    c0 = cache_counters(client)
    first = ask(client, data_url)
    c1 = cache_counters(client)
    assert (c1["misses"] - c0["misses"], c1["hits"] - c0["hits"]) == (1, 0)  # decoded once
    again = ask(client, data_url)
    via_http = ask(client, http_url)  # same bytes from a URL: the same entry
    c2 = cache_counters(client)
    assert (c2["misses"] - c1["misses"], c2["hits"] - c1["hits"]) == (0, 2)
    fresh = ask(client, video_url(copy, "video/mp4"))  # other bytes, same frames: decoded again
    c3 = cache_counters(client)
    assert (c3["misses"] - c2["misses"], c3["hits"] - c2["hits"]) == (1, 0)

    tokens, logprobs, prompt_tokens = first
    assert prompt_tokens > 8 * 729 and len(tokens) == MAX_TOKENS
    for name, other in (("cached", again), ("cached via http", via_http), ("decoded again", fresh)):
        assert other[0] == tokens, name
        assert other[2] == prompt_tokens, name
        # the engine's prefix cache serves the cached turns: same kernels, same numbers
        assert other[1] == pytest.approx(logprobs, abs=1e-4), name


def test_a_different_num_frames_is_a_different_entry(client, clip):
    url = video_url(clip)
    ask(client, url, num_frames=8)  # present already (or now)
    c0 = cache_counters(client)
    _, _, prompt6 = ask(client, url, num_frames=6)
    c1 = cache_counters(client)
    assert c1["misses"] - c0["misses"] == 1
    _, _, prompt8 = ask(client, url, num_frames=8)
    c2 = cache_counters(client)
    assert c2["hits"] - c1["hits"] == 1 and c2["misses"] == c1["misses"]
    assert prompt8 - prompt6 == 2 * 729


def test_the_cache_stays_within_its_bound(client):
    c = cache_counters(client)
    assert c["capacity"] == 2**30  # the default --media-cache-gib 1
    assert 0 < c["bytes"] <= c["capacity"]
