"""The replica's Ray hooks without a cluster: ``check_health`` follows the app's readiness, ``__del__``
drains before the app's lifespan shutdown, the response header middleware."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace

import pytest

from server import ray_serve
from server.settings import ServerSettings

Replica = ray_serve.InterleaveServer.func_or_class


class FakeState:
    """The part of :class:`server.lifecycle.AppState` the hooks use."""

    def __init__(self, phase: str, *, dead: bool = False, load_error: str | None = None) -> None:
        self.phase = phase
        self.engine = SimpleNamespace(is_dead=dead) if phase not in ("loading", "failed") else None
        self.load_error = load_error
        self.in_flight = 0
        self.calls: list[object] = []

    @property
    def is_ready(self) -> bool:
        return self.phase == "ready" and self.engine is not None and not self.engine.is_dead

    def begin_drain(self) -> None:
        self.calls.append("begin_drain")
        self.phase = "draining"

    async def wait_idle(self, timeout: float) -> bool:
        self.calls.append(("wait_idle", timeout))
        return True


def replica_with(state: FakeState, **settings) -> object:
    obj = object.__new__(Replica)  # no __init__: no engine, no Ray
    obj.settings = ServerSettings(**settings)
    obj._fastapi = SimpleNamespace(state=SimpleNamespace(interleave=state))
    return obj


async def test_health_check_passes_when_ready():
    await Replica.check_health(replica_with(FakeState("ready")))


@pytest.mark.parametrize(
    "state, match",
    [
        (FakeState("failed", load_error="OSError: no such checkpoint"), "no such checkpoint"),
        (FakeState("engine_dead", load_error="the engine core process died"), "engine core process died"),
        (FakeState("ready", dead=True), "engine dead"),
        (FakeState("draining"), "draining"),
        (FakeState("stopped"), "stopped"),
    ],
)
async def test_health_check_raises_unless_ready(state, match):
    with pytest.raises(RuntimeError, match=match):
        await Replica.check_health(replica_with(state))


async def test_first_health_check_waits_for_the_engine_to_load():
    state = FakeState("loading")
    check = asyncio.ensure_future(Replica.check_health(replica_with(state)))
    await asyncio.sleep(2 * ray_serve.LOAD_POLL_SECONDS)
    assert not check.done()  # still loading: Ray keeps the replica starting, no traffic yet
    state.engine = SimpleNamespace(is_dead=False)
    state.phase = "ready"
    await asyncio.wait_for(check, 10)


async def test_health_check_before_the_app_exists_raises():
    obj = object.__new__(Replica)
    obj._fastapi = None
    with pytest.raises(RuntimeError, match="not built"):
        await Replica.check_health(obj)


async def test_shutdown_drains_then_runs_the_lifespan_shutdown():
    state = FakeState("ready")
    obj = replica_with(state, drain_timeout_seconds=7)
    order: list[str] = []

    class Lifespan:
        logger = logging.getLogger("test")

        async def shutdown(self) -> None:
            order.append(f"lifespan shutdown after {state.calls}")

    obj._serve_asgi_lifespan = Lifespan()
    await Replica.__del__(obj)
    assert order == ["lifespan shutdown after ['begin_drain', ('wait_idle', 7.0)]"]


async def test_replica_header_and_a_single_request_id():
    sent: list[dict] = []

    async def app(scope, receive, send):
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"x-request-id", b"abc"), (b"a", b"1")],
            }
        )
        await send({"type": "http.response.body", "body": b"ok"})

    async def send(message):
        sent.append(message)

    mw = ray_serve.ReplicaHeaderMiddleware(app, replica_id="r1")
    await mw({"type": "http"}, None, send)
    assert sent[0]["headers"] == [(b"a", b"1"), (b"x-replica-id", b"r1")]  # Ray's proxy adds x-request-id
    assert sent[1]["body"] == b"ok"
