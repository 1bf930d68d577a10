"""Bounded admission: how much generation work the server takes on at once.

A generation request is *admitted* once its body is read and parsed and before any media is fetched
or decoded; it holds its share until its response has been sent (for streams: the last event). Three
bounds apply together, each with a setting:

- requests admitted (``--max-concurrent-requests``),
- images, video frames and scene views of the admitted requests, each counted at its most before
  decoding (a video at its ``num_frames``) (``--max-images-in-flight``; 729 visual tokens each),
- request body bytes of the admitted requests, which is where inline (``data:``) media live
  (``--max-request-bytes-in-flight``).

Past any bound a request is refused at once with 503 and ``Retry-After`` (a load balancer then tries
another replica; clients back off), never queued without limit. A request that is alone is always
admitted, so a bound smaller than one request can never starve it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from server.errors import service_unavailable
from server.metrics import ServerMetrics


@dataclass(frozen=True)
class AdmissionLimits:
    """The three bounds (from the settings).

    Attributes:
        max_requests: admitted requests at once.
        max_images: images + frames + views of the admitted requests (each at its most).
        max_body_bytes: request body bytes of the admitted requests.
    """

    max_requests: int
    max_images: int
    max_body_bytes: int


@dataclass
class Ticket:
    """One admitted request's share; :meth:`Admission.release` gives it back (once)."""

    images: int
    body_bytes: int
    released: bool = False


@dataclass
class Admission:
    """Admission control of one server process (lives on the app state, shared by requests).

    Attributes:
        limits: the bounds.
        metrics: where admitted / rejected counts and the in-flight gauges go.
        requests, images, body_bytes: what the admitted requests hold now.
    """

    limits: AdmissionLimits
    metrics: ServerMetrics
    requests: int = 0
    images: int = 0
    body_bytes: int = 0
    _idle: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self._idle.set()

    def admit(self, images: int, body_bytes: int) -> Ticket:
        """Admit a request that will use at most ``images`` images and holds ``body_bytes`` bytes.

        Raises:
            APIError: 503 ``server_overloaded`` with ``Retry-After: 1`` when a bound would be
                exceeded (and other requests are in flight).
        """
        reason = None
        if self.requests > 0:
            if self.requests + 1 > self.limits.max_requests:
                reason = "requests"
                detail = f"{self.requests} requests are in flight (max {self.limits.max_requests})"
            elif self.images + images > self.limits.max_images:
                reason = "images"
                detail = (
                    f"the admitted requests hold {self.images} images / frames / views and this one asks "
                    f"for up to {images} (max {self.limits.max_images} in flight)"
                )
            elif self.body_bytes + body_bytes > self.limits.max_body_bytes:
                reason = "bytes"
                detail = (
                    f"the admitted requests hold {self.body_bytes} body bytes and this one {body_bytes} "
                    f"(max {self.limits.max_body_bytes} in flight)"
                )
        if reason is not None:
            self.metrics.rejected.labels(reason=reason).inc()
            err = service_unavailable(
                f"The server is at capacity: {detail}; retry shortly or on another replica."
            )
            err.code = "server_overloaded"
            raise err
        self.requests += 1
        self.images += images
        self.body_bytes += body_bytes
        self._idle.clear()
        self.metrics.admitted.inc()
        self._publish()
        return Ticket(images, body_bytes)

    def release(self, ticket: Ticket) -> None:
        """Give back what ``ticket`` holds (no-op the second time)."""
        if ticket.released:
            return
        ticket.released = True
        self.requests -= 1
        self.images -= ticket.images
        self.body_bytes -= ticket.body_bytes
        if self.requests == 0:
            self._idle.set()
        self._publish()

    def _publish(self) -> None:
        self.metrics.in_flight.set(self.requests)
        self.metrics.images_in_flight.set(self.images)
        self.metrics.body_bytes_in_flight.set(self.body_bytes)

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until no request is admitted, at most ``timeout`` seconds. True if idle."""
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
            return True
        except TimeoutError:
            return self.requests == 0
