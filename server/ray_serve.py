"""The server as a Ray Serve application: the FastAPI app of :func:`server.app.create_app`, unchanged,
behind Ray Serve's HTTP proxy, one vLLM ``AsyncLLM`` per replica.

.. code-block:: bash

    serve run server.ray_serve:app model=/models/llava-interleave-qwen-7b-hf max_model_len=16384
    serve deploy deploy/ray/serve_config.yaml

``app`` is a Ray Serve application builder. Its arguments (``key=value`` after ``serve run``, ``args:``
in a Serve config) are :class:`~server.settings.ServerSettings` fields with the same names and
meanings as the flags of ``interleave-serve``; ``INTERLEAVE_*`` variables (for example from the
application's ``runtime_env.env_vars``) work as with the plain server, arguments win over them. Every
replica builds its own settings, app and engine; request handling is the plain server's.

What differs from the plain server, and only here:

- the app is late-bound (``serve.ingress`` without an app, ``__serve_build_asgi_app__``): each replica
  builds it from its own settings; Ray Serve runs the app's lifespan (engine start, engine shutdown);
- readiness is Ray's health check: :meth:`InterleaveServer.check_health` raises while the replica is
  not ready (engine failed to start or died, draining); Ray's first check, which gates the replica's
  start, waits for the engine to finish loading;
- graceful shutdown: Ray stops routing to the replica and waits for its ongoing requests, then the
  replica drains (``AppState.begin_drain`` / ``wait_idle`` for up to ``drain_timeout_seconds``) and
  the lifespan shuts the engine down;
- the deployment options (resources per replica, placement group of a tensor / pipeline parallel
  replica, graceful shutdown timeout) are derived from the settings by :func:`deployment_options`;
  a Serve config's ``deployments:`` entry overrides any of them, and sets the replica count or the
  ``autoscaling_config``;
- every response carries ``x-replica-id`` (the Ray Serve replica that served it).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from ray import serve
from ray.serve import Application

from server.settings import ServerSettings

logger = logging.getLogger(__name__)

DEPLOYMENT_NAME = "InterleaveServer"
REPLICA_HEADER = "x-replica-id"
"""Response header naming the Ray Serve replica that served the request."""


SHUTDOWN_MARGIN_SECONDS = 20.0
"""Seconds beyond ``drain_timeout_seconds`` that Ray grants a stopping replica before killing it:
room for the engine shutdown after the drain (a few seconds for vLLM's engine core)."""

LOAD_POLL_SECONDS = 0.5
"""How often the first health check looks whether the engine finished loading."""

NOT_UNDER_RAY = frozenset({"host", "port"})
"""Settings that mean nothing under Ray Serve: its HTTP proxy listens (``http_options`` of the Serve
config, or ``serve start --http-host/--http-port``)."""


class ReplicaHeaderMiddleware:
    """Pure ASGI middleware adding ``x-replica-id: <replica id>`` to every HTTP response (streams too).

    It also drops the app's own ``x-request-id`` response header: Ray Serve's proxy always adds the
    request id it forwarded to the replica (the one the app used), and two copies would reach the client.
    """

    def __init__(self, app: Any, replica_id: str) -> None:
        self.app = app
        self._header = (REPLICA_HEADER.encode(), replica_id.encode())

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_header(message: dict) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != b"x-request-id"]
                message = {**message, "headers": [*headers, self._header]}
            await send(message)

        await self.app(scope, receive, send_with_header)


def settings_from_args(args: Mapping[str, Any] | None) -> ServerSettings:
    """:class:`ServerSettings` from the application arguments over ``INTERLEAVE_*`` variables.

    Raises:
        ValueError: an argument that is no setting, or ``host`` / ``port`` (Ray's proxy listens).
        pydantic.ValidationError: a value the setting does not take.
    """
    args = dict(args or {})
    unknown = sorted(set(args) - set(ServerSettings.model_fields))
    if unknown:
        raise ValueError(
            f"unknown application argument(s) {unknown}: arguments are interleave-serve settings "
            "(field names of server.settings.ServerSettings, e.g. max_model_len)"
        )
    ignored = sorted(set(args) & NOT_UNDER_RAY)
    if ignored:
        raise ValueError(
            f"{ignored} cannot be set for a Ray Serve application: Ray Serve's HTTP proxy listens "
            "(http_options in the Serve config)"
        )
    return ServerSettings(**args)


def deployment_options(settings: ServerSettings, *, gpus: bool, num_cpus: float = 1.0) -> dict[str, Any]:
    """Ray Serve deployment options for one replica serving ``settings``.

    Args:
        settings: the replica's settings.
        gpus: whether the engine's workers run on GPUs (one GPU per tensor / pipeline parallel rank).
        num_cpus: CPUs reserved for the replica process itself.

    Returns:
        Keyword arguments of ``serve.deployment`` / ``Deployment.options``: ``ray_actor_options``,
        ``max_ongoing_requests`` (= ``max_concurrent_requests``), ``graceful_shutdown_timeout_s``
        and, with vLLM's Ray executor (``distributed_executor_backend="ray"``),
        ``placement_group_bundles`` (bundle 0 holds the replica and the first GPU worker, one
        ``{"GPU": 1}`` bundle per further worker) with the ``PACK`` strategy (one node if the GPUs
        fit there, else several).

    Raises:
        ValueError: the Ray executor without GPUs (vLLM's Ray executor needs an accelerator).
    """
    devices = settings.tensor_parallel_size * settings.pipeline_parallel_size * settings.data_parallel_size
    options: dict[str, Any] = {
        # Requests Ray routes to one replica at once: what the replica admits (Ray's own default, 5,
        # would leave vLLM's continuous batching mostly idle); more wait in Ray's router, up to the
        # deployment's max_queued_requests, instead of getting the replica's 503.
        "max_ongoing_requests": settings.max_concurrent_requests,
        "graceful_shutdown_timeout_s": settings.drain_timeout_seconds + SHUTDOWN_MARGIN_SECONDS,
    }
    if settings.distributed_executor_backend == "ray":
        if not gpus:
            raise ValueError(
                "distributed_executor_backend=ray needs GPUs: vLLM's Ray executor places one worker "
                "per GPU in the replica's placement group (none were found in the Ray cluster)"
            )
        options["ray_actor_options"] = {"num_cpus": num_cpus, "num_gpus": 0}
        options["placement_group_bundles"] = [{"CPU": num_cpus, "GPU": 1.0}] + [
            {"GPU": 1.0} for _ in range(devices - 1)
        ]
        options["placement_group_strategy"] = "PACK"
    else:
        options["ray_actor_options"] = {"num_cpus": num_cpus, "num_gpus": float(devices) if gpus else 0.0}
    return options


def _has_gpus() -> bool:
    """The Ray cluster has GPUs (when Ray is up, as under ``serve deploy``), else this machine has."""
    import ray

    if ray.is_initialized():
        return ray.cluster_resources().get("GPU", 0) > 0
    import torch

    return torch.cuda.is_available()


@serve.ingress()
class _Ingress:
    """One replica: its settings, its app (built in the replica) and its engine."""

    def __init__(self, args: Mapping[str, Any]) -> None:
        from server.engine_process import mark_api_process

        self.settings = settings_from_args(args)
        # The server's log lines go through Ray Serve's handlers (Serve configures only its own
        # "ray.serve" logger): tagged with the replica's id, on the replica's stderr.
        server_logger = logging.getLogger("server")
        server_logger.setLevel(self.settings.log_level.upper())
        for handler in logging.getLogger("ray.serve").handlers:
            server_logger.addHandler(handler)
        server_logger.propagate = False
        # As under interleave-serve: the engine processes get SIGTERM when this replica process dies
        # (a killed replica leaves no engine behind) and leave its process group.
        mark_api_process()
        self._fastapi: Any = None  # the FastAPI app, once built in the replica

    def __serve_build_asgi_app__(self) -> Any:
        from server.app import create_app

        app = create_app(self.settings)
        context = serve.get_replica_context()
        app.add_middleware(ReplicaHeaderMiddleware, replica_id=context.replica_id.unique_id)
        self._fastapi = app
        return app

    @property
    def state(self) -> Any:
        """The app's :class:`server.lifecycle.AppState` (None before the app is built)."""
        return self._fastapi.state.interleave if self._fastapi is not None else None

    async def check_health(self) -> None:
        """Ray Serve's health check: raises unless the replica is ready.

        Ray runs a first check right after the app's lifespan started (the engine loads in the
        background there) and counts the replica as started only once it passes, so while the engine
        is still loading this first check waits for the loader; later checks never wait.

        Raises:
            RuntimeError: the engine failed to start or died, or the replica is draining / stopped.
        """
        import asyncio

        state = self.state
        if state is None:
            raise RuntimeError("the app is not built yet")
        while state.phase == "loading":
            await asyncio.sleep(LOAD_POLL_SECONDS)
        if not state.is_ready:
            reason = state.load_error or (
                "engine dead" if state.engine is not None and state.engine.is_dead else ""
            )
            raise RuntimeError(f"replica not ready: phase {state.phase}" + (f" ({reason})" if reason else ""))


@serve.deployment(name=DEPLOYMENT_NAME)
class InterleaveServer(_Ingress):
    """The deployment: :class:`_Ingress` with the drain before the app's lifespan shutdown."""

    async def __del__(self) -> None:
        state = self.state
        if state is not None:
            state.begin_drain()
            timeout = self.settings.drain_timeout_seconds
            if not await state.wait_idle(timeout):
                logger.warning(
                    "drain timeout: %d request(s) still in flight, stopping anyway", state.in_flight
                )
        await super().__del__()  # type: ignore[misc]  # serve.ingress's async __del__: the ASGI lifespan shutdown (the engine stops)


def app(args: dict[str, Any]) -> Application:
    """The application builder of ``serve run server.ray_serve:app`` and ``import_path`` in a Serve
    config (see the module docstring). Validates the arguments here, so a bad one fails the deploy."""
    settings = settings_from_args(args)
    options = deployment_options(settings, gpus=_has_gpus())
    logger.info("Ray Serve deployment %s: %s", DEPLOYMENT_NAME, options)
    deployment: Any = InterleaveServer  # serve.deployment made the class a Deployment (untyped)
    return deployment.options(**options).bind(dict(args or {}))


__all__ = ["app", "deployment_options", "settings_from_args", "InterleaveServer", "REPLICA_HEADER"]
