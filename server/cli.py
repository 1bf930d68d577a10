"""``interleave-serve``: run the server (uvicorn, one process, one engine).

Flags are generated from :class:`server.settings.ServerSettings`: every field is a flag
(``--max-model-len``) and an environment variable (``INTERLEAVE_MAX_MODEL_LEN``); flags win.
``--help-markdown`` prints the flag table that docs/api.md embeds.

Graceful shutdown: the first SIGTERM/SIGINT (to this process or to its whole process group: the
engine processes are in a group of their own, see :mod:`server.engine_process`) turns /ready to 503
and new requests to 503, waits for in-flight requests up to ``--drain-timeout-seconds``, then stops
uvicorn and the engine and exits 0; a second signal stops at once. A bad ``--model`` or a port that
cannot be bound fails in milliseconds with exit code 2, before the engine starts; an engine that
cannot start or dies while serving ends the process with exit code 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import re
import signal
import socket
import sys
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from server.logs import configure_logging
from server.settings import ENV_PREFIX, ServerSettings

logger = logging.getLogger("server")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _is_bool(annotation: Any) -> bool:
    if annotation is bool:
        return True
    return typing.get_origin(annotation) in (typing.Union, types.UnionType) and bool in typing.get_args(
        annotation
    )


def _default_text(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, tuple):
        return ",".join(value) if value else "none"
    if isinstance(value, str) and value == "":
        return '""'
    return str(value)


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser; only flags given on the command line reach the settings."""
    parser = argparse.ArgumentParser(
        prog="interleave-serve",
        description="OpenAI-compatible server for LLaVA-NeXT-Interleave on vLLM (images, videos and 3D "
        "scenes as interleaved image-text sequences). Every flag can also be set with the environment "
        f"variable {ENV_PREFIX}<FLAG_NAME> (e.g. --max-model-len -> {ENV_PREFIX}MAX_MODEL_LEN).",
        argument_default=argparse.SUPPRESS,
    )
    for name, field in ServerSettings.model_fields.items():
        env = ENV_PREFIX + name.upper()
        help_text = f"{field.description or ''} [env {env}; default {_default_text(field.default)}]"
        if _is_bool(field.annotation):
            parser.add_argument(_flag(name), dest=name, action=argparse.BooleanOptionalAction, help=help_text)
        else:
            parser.add_argument(_flag(name), dest=name, metavar=name.upper(), help=help_text)
    parser.add_argument(
        "--help-markdown",
        action="store_true",
        default=False,
        help="Print the flags as a Markdown table (for the docs) and exit.",
    )
    return parser


def settings_markdown() -> str:
    """A Markdown table of every flag, its environment variable, default and meaning."""
    rows = ["| Flag | Environment variable | Default | Meaning |", "| --- | --- | --- | --- |"]
    for name, field in ServerSettings.model_fields.items():
        flag = _flag(name)
        if _is_bool(field.annotation):
            flag = f"{flag} / --no-{name.replace('_', '-')}"
        desc = (field.description or "").replace("|", "\\|")
        rows.append(
            f"| `{flag}` | `{ENV_PREFIX}{name.upper()}` | `{_default_text(field.default)}` | {desc} |"
        )
    return "\n".join(rows) + "\n"


def parse_settings(argv: list[str] | None = None) -> ServerSettings | None:
    """Parse flags (over environment variables); None if ``--help-markdown`` was printed."""
    parser = build_parser()
    args = vars(parser.parse_args(argv))
    if args.pop("help_markdown", False):
        sys.stdout.write(settings_markdown())
        return None
    try:
        return ServerSettings(**args)
    except ValidationError as exc:
        lines = []
        for err in exc.errors(include_url=False):
            loc = ".".join(str(x) for x in err.get("loc", ()))
            lines.append(f"{_flag(loc) if loc else ''}: {err.get('msg')}")
        parser.error("invalid settings:\n  " + "\n  ".join(lines))
        raise  # unreachable


def _make_server_class() -> type:
    import uvicorn

    class DrainingServer(uvicorn.Server):
        """uvicorn.Server whose first SIGTERM/SIGINT drains before exiting."""

        def __init__(self, config: uvicorn.Config, state: Any, drain_timeout: float) -> None:
            super().__init__(config)
            self.state = state
            self.drain_timeout = drain_timeout
            self._loop: asyncio.AbstractEventLoop | None = None
            self._draining = False

        async def serve(self, sockets: Any = None) -> None:
            self._loop = asyncio.get_running_loop()
            await super().serve(sockets)

        def handle_exit(self, sig: int, frame: types.FrameType | None) -> None:
            if self._draining or self._loop is None or sig not in (signal.SIGTERM, signal.SIGINT):
                # A second signal (or one before the loop runs): stop now, without waiting.
                if self._draining:
                    self.force_exit = True
                super().handle_exit(sig, frame)
                return
            # Not appended to uvicorn's captured signals: uvicorn would re-raise it after shutdown
            # and a clean drain would end "killed by SIGTERM" (exit 143), which supervisors read
            # as a crash. A drained shutdown exits 0.
            self._draining = True
            self.state.begin_drain()
            logger.info(
                "signal %s: draining (/ready -> 503), waiting up to %.0f s for %d in-flight request(s)",
                signal.Signals(sig).name,
                self.drain_timeout,
                self.state.in_flight,
            )
            self._loop.call_soon_threadsafe(lambda: asyncio.ensure_future(self._drain()))

        async def _drain(self) -> None:
            idle = await self.state.wait_idle(self.drain_timeout)
            if not idle:
                logger.warning(
                    "drain timeout: %d request(s) still in flight, stopping anyway", self.state.in_flight
                )
            self.should_exit = True

    return DrainingServer


def run(settings: ServerSettings, sock: socket.socket | None = None) -> int:
    """Serve until stopped. Returns the process exit code (1 if the engine could not start or died)."""
    from server.app import create_app
    from server.engine_process import mark_api_process

    mark_api_process()  # the engine processes leave our process group (server.engine_process)
    return serve(lambda on_fatal: create_app(settings, on_fatal=on_fatal), settings, sock)


FATAL_EXIT_GRACE_SECONDS = 5.0
"""After an engine failure, seconds that in-flight responses get to deliver their errors before the
process stops regardless."""


def serve(make_app: Any, settings: ServerSettings, sock: socket.socket | None = None) -> int:
    """Run ``make_app(on_fatal)`` under uvicorn with the draining shutdown; returns the exit code
    (0 after a drained shutdown, 1 if the engine could not start or died).

    Args:
        make_app: builds the ASGI app given the ``on_fatal`` callback.
        settings: host, port, keep-alive timeout, log level, drain timeout.
        sock: an already bound listening socket (:func:`bind_socket`), else uvicorn binds.
    """
    import uvicorn

    exit_code = 0
    server_box: dict[str, Any] = {}

    def on_fatal(exc: BaseException) -> None:
        nonlocal exit_code
        exit_code = 1
        server = server_box.get("server")
        if server is not None:
            server.should_exit = True

            def force() -> None:
                server.force_exit = True

            try:
                asyncio.get_running_loop().call_later(FATAL_EXIT_GRACE_SECONDS, force)
            except RuntimeError:  # not on the loop: stop at once
                force()

    app = make_app(on_fatal)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        log_config=None,  # uvicorn's lines go through our root handler: one format (--log-format) for all
        lifespan="on",
        timeout_graceful_shutdown=max(1, int(settings.drain_timeout_seconds)),
        timeout_keep_alive=settings.keep_alive_timeout_seconds,
        access_log=settings.log_level == "debug",
    )
    server = _make_server_class()(config, app.state.interleave, settings.drain_timeout_seconds)
    server_box["server"] = server
    server.run(sockets=[sock] if sock is not None else None)
    return exit_code


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind and listen on ``host:port`` before anything slow starts (the engine takes a minute).

    Raises:
        OSError: the address cannot be bound (in use, no permission, unknown host).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
LLAVA_MODEL_TYPES = ("llava", "llava_qwen")
"""``config.json`` model types of LLaVA-Interleave checkpoints: the HF format and the authors' lmms-lab one."""


def check_model(model: str) -> str | None:
    """Why ``--model`` cannot be served, or None if it looks servable (checked in milliseconds,
    before the engine starts). A hub id (``org/name``) that is not a local folder is left to vLLM."""
    path = Path(model).expanduser()
    if not path.exists():
        if _HUB_ID.match(model) and not model.startswith((".", "~")):
            return None
        return f"--model {model}: no such file or folder"
    config = path / "config.json"
    if not config.is_file():
        return f"--model {model}: not a checkpoint folder (no config.json)"
    try:
        data = json.loads(config.read_text())
    except (OSError, ValueError) as exc:
        return f"--model {model}: config.json cannot be read: {exc}"
    model_type = data.get("model_type") if isinstance(data, dict) else None
    if model_type not in LLAVA_MODEL_TYPES:
        return (
            f"--model {model}: not a LLaVA-Interleave checkpoint (config.json model_type is {model_type!r}; "
            f"expected one of {', '.join(LLAVA_MODEL_TYPES)})"
        )
    return None


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``interleave-serve`` console script."""
    settings = parse_settings(argv)
    if settings is None:
        return
    configure_logging(settings.log_level, settings.log_format)
    # Fail fast, before the engine loads (about a minute), with one line each.
    if settings.model:
        problem = check_model(settings.model)
        if problem is not None:
            logger.error("%s", problem)
            sys.exit(2)
        if not Path(settings.model).exists():
            logger.warning("--model %s is not a local folder; vLLM will try to resolve it", settings.model)
    try:
        sock = bind_socket(settings.host, settings.port)
    except OSError as exc:
        logger.error("cannot listen on %s:%d: %s", settings.host, settings.port, exc.strerror or exc)
        sys.exit(2)
    sys.exit(run(settings, sock))


if __name__ == "__main__":
    main()
