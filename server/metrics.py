"""Prometheus metrics of the HTTP layer (prometheus-client), exposed with vLLM's own at ``GET /metrics``.

vLLM's v1 stat loggers register their ``vllm:*`` metrics in prometheus-client's default registry in
the API process; :class:`ServerMetrics` registers ours in the same registry by default, so one scrape
returns both.
"""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

PREFIX = "interleave"

_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0)
_TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0)
_ITL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_DECODE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ServerMetrics:
    """The server's metrics (units in the names: ``_seconds``, ``_total``).

    - ``interleave_requests_total{endpoint, status}``: finished HTTP requests by status code.
    - ``interleave_request_duration_seconds{endpoint}``: request latency (for streams: until the
      last event).
    - ``interleave_time_to_first_token_seconds``: request arrival -> first generated token.
    - ``interleave_inter_token_latency_seconds``: between consecutive generated-token outputs of a
      choice (divided by the tokens in the output).
    - ``interleave_prompt_tokens_total`` / ``interleave_generation_tokens_total``: tokens processed
      (prompt tokens include the visual tokens).
    - ``interleave_media_items_total{kind}`` and ``interleave_media_decode_seconds{kind}``: decoded
      images, videos, scene views (kind = image / video / scene_view), and fetch+decode time.
    - ``interleave_media_cache_hits_total{kind}``, ``..._misses_total{kind}``,
      ``..._evictions_total{kind}`` (kind = image / video), ``interleave_media_cache_bytes``,
      ``interleave_media_cache_entries``, ``interleave_media_cache_capacity_bytes``: the decoded-media
      cache (:mod:`server.media.cache`); a request that waits for a decode already running counts
      as a hit.
    - ``interleave_requests_in_flight``, ``interleave_images_in_flight``,
      ``interleave_request_body_bytes_in_flight``: what the admitted requests hold (gauges; see
      :mod:`server.admission`).
    - ``interleave_admitted_requests_total``, ``interleave_rejected_requests_total{reason}``,
      ``interleave_request_timeouts_total{phase}``: admission and deadlines.
    """

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.registry = registry
        p = PREFIX
        self.requests = Counter(
            f"{p}_requests",
            "HTTP requests by endpoint and status code.",
            ["endpoint", "status"],
            registry=registry,
        )
        self.request_duration = Histogram(
            f"{p}_request_duration_seconds",
            "HTTP request latency in seconds (streams: until the last event).",
            ["endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.ttft = Histogram(
            f"{p}_time_to_first_token_seconds",
            "Seconds from request arrival to the first generated token.",
            buckets=_TTFT_BUCKETS,
            registry=registry,
        )
        self.itl = Histogram(
            f"{p}_inter_token_latency_seconds",
            "Seconds between consecutive generated tokens of a choice.",
            buckets=_ITL_BUCKETS,
            registry=registry,
        )
        self.prompt_tokens = Counter(
            f"{p}_prompt_tokens", "Prompt tokens processed (visual tokens included).", registry=registry
        )
        self.generation_tokens = Counter(f"{p}_generation_tokens", "Generated tokens.", registry=registry)
        self.media_items = Counter(
            f"{p}_media_items",
            "Media items decoded, by kind (image, video, scene_view).",
            ["kind"],
            registry=registry,
        )
        self.media_decode_seconds = Histogram(
            f"{p}_media_decode_seconds",
            "Seconds to fetch and decode one media item, by kind.",
            ["kind"],
            buckets=_DECODE_BUCKETS,
            registry=registry,
        )
        self.media_cache_hits = Counter(
            f"{p}_media_cache_hits",
            "Decoded-media cache lookups served without decoding (incl. waits for a running decode), by kind.",
            ["kind"],
            registry=registry,
        )
        self.media_cache_misses = Counter(
            f"{p}_media_cache_misses",
            "Decoded-media cache lookups that decoded the item, by kind.",
            ["kind"],
            registry=registry,
        )
        self.media_cache_evictions = Counter(
            f"{p}_media_cache_evictions",
            "Decoded-media cache entries evicted (LRU), by kind.",
            ["kind"],
            registry=registry,
        )
        self.media_cache_bytes = Gauge(
            f"{p}_media_cache_bytes", "Bytes held by the decoded-media cache (accounted).", registry=registry
        )
        self.media_cache_entries = Gauge(
            f"{p}_media_cache_entries", "Entries in the decoded-media cache.", registry=registry
        )
        self.media_cache_capacity_bytes = Gauge(
            f"{p}_media_cache_capacity_bytes",
            "Bound of the decoded-media cache (--media-cache-gib).",
            registry=registry,
        )
        self.in_flight = Gauge(
            f"{p}_requests_in_flight",
            "Generation requests admitted and not finished (preprocessing, in the engine, or streaming).",
            registry=registry,
        )
        self.images_in_flight = Gauge(
            f"{p}_images_in_flight",
            "Images, video frames and scene views held by admitted requests (each counted at its most).",
            registry=registry,
        )
        self.body_bytes_in_flight = Gauge(
            f"{p}_request_body_bytes_in_flight",
            "Request body bytes held by admitted requests.",
            registry=registry,
        )
        self.admitted = Counter(f"{p}_admitted_requests", "Generation requests admitted.", registry=registry)
        self.rejected = Counter(
            f"{p}_rejected_requests",
            "Generation requests refused with 503 because a bound was reached, by the bound "
            "(requests, images, bytes) or because the server was draining or its engine had failed.",
            ["reason"],
            registry=registry,
        )
        self.timed_out = Counter(
            f"{p}_request_timeouts",
            "Requests that hit a deadline, by phase (body: the upload, request: --request-timeout-seconds).",
            ["phase"],
            registry=registry,
        )

    def render(self) -> tuple[bytes, str]:
        """The exposition text of the whole registry and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


_default: ServerMetrics | None = None


def default_metrics() -> ServerMetrics:
    """The process-wide metrics in prometheus-client's default registry (created once)."""
    global _default
    if _default is None:
        _default = ServerMetrics(REGISTRY)
    return _default
