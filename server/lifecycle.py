"""Process-wide server state: loading -> ready -> draining (or failed), and the in-flight count.

Only process-level facts live here (the engine, shared clients, the phase); request state never does.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from server.generation import InferenceEngine
from server.metrics import ServerMetrics
from server.settings import ServerSettings

if TYPE_CHECKING:
    from server.chat import ChatService

Phase = Literal["loading", "ready", "draining", "failed", "stopped"]


@dataclass
class AppState:
    """State of one server process (``app.state.interleave``).

    Attributes:
        settings: the configuration.
        metrics: the metrics.
        phase: ``loading`` (engine starting), ``ready``, ``draining`` (SIGTERM received: no new
            requests), ``failed`` (engine could not start), ``stopped``.
        engine, service, media_loader: set once loaded.
        load_error: why loading failed.
        in_flight: chat requests being served.
        started_at: unix time the process started.
    """

    settings: ServerSettings
    metrics: ServerMetrics
    phase: Phase = "loading"
    engine: InferenceEngine | None = None
    service: ChatService | None = None
    media_loader: object | None = None
    load_error: str | None = None
    in_flight: int = 0
    started_at: int = field(default_factory=lambda: int(time.time()))
    _idle: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self._idle.set()

    @property
    def is_ready(self) -> bool:
        return self.phase == "ready" and self.engine is not None and not self.engine.is_dead

    @property
    def served_model_name(self) -> str | None:
        return self.engine.served_model_name if self.engine is not None else None

    def request_started(self) -> None:
        self.in_flight += 1
        self._idle.clear()

    def request_finished(self) -> None:
        self.in_flight = max(0, self.in_flight - 1)
        if self.in_flight == 0:
            self._idle.set()

    def begin_drain(self) -> None:
        """Stop taking requests: /ready answers 503 and new chat requests get 503."""
        if self.phase in ("loading", "ready"):
            self.phase = "draining"

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until no chat request is in flight, at most ``timeout`` seconds. True if idle."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return self.in_flight == 0
