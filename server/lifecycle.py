"""Process-wide server state: loading -> ready -> draining (or failed / engine_dead), and admission.

Only process-level facts live here (the engine, shared clients, the phase, the admission counts);
request state never does.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from server.admission import Admission, AdmissionLimits
from server.generation import InferenceEngine
from server.metrics import ServerMetrics
from server.settings import ServerSettings

if TYPE_CHECKING:
    from server.chat import ChatService
    from server.media import MediaLoaderProtocol

Phase = Literal["loading", "ready", "draining", "failed", "engine_dead", "stopped"]


@dataclass
class AppState:
    """State of one server process (``app.state.interleave``).

    Attributes:
        settings: the configuration.
        metrics: the metrics.
        phase: ``loading`` (engine starting), ``ready``, ``draining`` (SIGTERM received: no new
            requests), ``failed`` (engine could not start), ``engine_dead`` (the engine died while
            serving; the process is exiting), ``stopped``.
        engine, service, media_loader: set once loaded.
        load_error: why loading failed, or why the engine died.
        admission: the admitted requests (bounded; see :mod:`server.admission`).
        started_at: unix time the process started.
    """

    settings: ServerSettings
    metrics: ServerMetrics
    phase: Phase = "loading"
    engine: InferenceEngine | None = None
    service: ChatService | None = None
    media_loader: MediaLoaderProtocol | None = None
    load_error: str | None = None
    admission: Admission = field(init=False)
    started_at: int = field(default_factory=lambda: int(time.time()))

    def __post_init__(self) -> None:
        s = self.settings
        limits = AdmissionLimits(
            s.max_concurrent_requests, s.max_images_in_flight, s.max_request_bytes_in_flight
        )
        self.admission = Admission(limits, self.metrics)

    @property
    def is_ready(self) -> bool:
        return self.phase == "ready" and self.engine is not None and not self.engine.is_dead

    @property
    def served_model_name(self) -> str | None:
        return self.engine.served_model_name if self.engine is not None else None

    @property
    def in_flight(self) -> int:
        """Generation requests admitted and not finished."""
        return self.admission.requests

    def engine_failed(self, reason: str) -> None:
        """The engine died while serving: /health and /ready fail, new requests get 503."""
        self.phase = "engine_dead"
        self.load_error = reason

    def begin_drain(self) -> None:
        """Stop taking requests: /ready answers 503 and new chat requests get 503."""
        if self.phase in ("loading", "ready"):
            self.phase = "draining"

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until no generation request is in flight, at most ``timeout`` seconds. True if idle."""
        return await self.admission.wait_idle(timeout)
