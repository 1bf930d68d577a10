"""Logging: the request id on every line, one line per generation request, text or JSON lines.

- :data:`REQUEST_ID` is a context variable the request middleware sets for the duration of a request;
  every record logged meanwhile (in the request's task, in tasks it starts, in ``asyncio.to_thread``
  workers) carries it as ``record.request_id``, so error and disconnect lines name their request
  without passing ids around.
- :class:`RequestStats` is what a generation request reports (tokens, media, time to first token):
  the middleware creates one per generation request (:data:`REQUEST_STATS`), the chat service fills
  it in (:func:`request_stats`), and the middleware logs it with the status and duration in one
  ``request`` line (:func:`log_request`) once the response has been sent.
- ``--log-format json`` (:func:`configure_logging`) writes one JSON object per line (for log
  pipelines): ``ts``, ``level``, ``logger``, ``message``, ``request_id`` and, on request lines, the
  fields of :class:`RequestStats`. vLLM's own lines (API and engine processes) get the same format
  through vLLM's ``VLLM_LOGGING_CONFIG_PATH``.
"""

from __future__ import annotations

import contextvars
import dataclasses
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Literal

LogFormat = Literal["text", "json"]

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("interleave_request_id", default=None)
"""The ``x-request-id`` of the request being served in this context (None outside requests)."""


REQUEST_ERROR_KEY = "error_code"
"""Key of the error ``code`` (or ``type``) of a failed request in the ASGI scope's state."""

request_logger = logging.getLogger("server.requests")
"""Logger of the per-request lines (``logger`` is ``server.requests`` in JSON lines)."""

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@dataclass
class RequestStats:
    """What one generation request reports in its log line (one per request, mutated while it runs).

    Attributes:
        prompt_tokens: prompt length in tokens, visual tokens included.
        visual_tokens: tokens of images, frames and views (729 each).
        completion_tokens: tokens generated (all ``n`` choices).
        images, videos, frames, scene_views: media parts of the request (``frames``: sampled frames
            of all videos; ``scene_views``: views of all 3D scenes).
        first_token_seconds: seconds from arrival to the first generated token (None: none yet).
    """

    prompt_tokens: int = 0
    visual_tokens: int = 0
    completion_tokens: int = 0
    images: int = 0
    videos: int = 0
    frames: int = 0
    scene_views: int = 0
    first_token_seconds: float | None = None


REQUEST_STATS: contextvars.ContextVar[RequestStats | None] = contextvars.ContextVar(
    "interleave_request_stats", default=None
)
"""The :class:`RequestStats` of the generation request being served in this context."""


def request_stats() -> RequestStats:
    """The current request's :class:`RequestStats` to fill in (a throwaway one outside a request,
    e.g. when a test drives the chat service directly)."""
    return REQUEST_STATS.get() or RequestStats()


def log_request(
    *,
    method: str,
    path: str,
    status: int,
    duration_seconds: float,
    stats: RequestStats | None,
    error: str | None,
) -> None:
    """The one ``request`` line of a generation request (INFO; the request id comes from the context).

    Text: ``request POST /v1/chat/completions 200 1.234s prompt_tokens=...``; JSON: the same fields
    as keys (``status``, ``duration_seconds``, the :class:`RequestStats` fields, ``error``).
    """
    fields: dict[str, Any] = {
        "request_id": REQUEST_ID.get(),
        "method": method,
        "path": path,
        "status": status,
    }
    fields["duration_seconds"] = round(duration_seconds, 4)
    if stats is not None:
        fields.update(dataclasses.asdict(stats))
        if stats.first_token_seconds is not None:
            fields["first_token_seconds"] = round(stats.first_token_seconds, 4)
    if error is not None:
        fields["error"] = error
    text = " ".join(
        f"{k}={v}" for k, v in fields.items() if k not in ("request_id", "method", "path", "status")
    )
    request_logger.info("request %s %s %d %s", method, path, status, text, extra={"request_fields": fields})


class RequestIdFilter(logging.Filter):
    """Adds ``record.request_id`` (:data:`REQUEST_ID`, or None) to every record it sees."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = REQUEST_ID.get()
        return True


class TextFormatter(logging.Formatter):
    """:data:`TEXT_FORMAT`, with ``[request <id>]`` after the logger name inside a request."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        rid = getattr(record, "request_id", None)
        if rid:
            head = f"{record.name}: "
            line = line.replace(head, f"{record.name} [request {rid}]: ", 1)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``ts`` (unix seconds), ``level``, ``logger``, ``message``,
    ``request_id`` (when set), the request line's fields, and ``exc_info`` (the traceback text)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = getattr(record, "request_id", None)
        if rid is None:
            rid = REQUEST_ID.get()
        if rid:
            entry["request_id"] = rid
        entry.update(getattr(record, "request_fields", None) or {})
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str, log_format: LogFormat = "text") -> None:
    """Configure the root logger (one stderr handler) for ``interleave-serve``.

    Args:
        level: ``debug``, ``info``, ``warning`` or ``error``.
        log_format: ``text`` (human-readable lines) or ``json`` (one JSON object per line; vLLM is
            pointed at the same format through ``VLLM_LOGGING_CONFIG_PATH`` unless that is set).
    """
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    if log_format == "json" and "VLLM_LOGGING_CONFIG_PATH" not in os.environ:
        os.environ["VLLM_LOGGING_CONFIG_PATH"] = _vllm_json_config(level)


def _vllm_json_config(level: str) -> str:
    """A ``logging.config.dictConfig`` file for vLLM's ``vllm`` logger (read in the API process and
    the engine processes alike) writing :class:`JsonFormatter` lines to stderr; returns its path."""
    config = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": f"{__name__}.JsonFormatter"}},
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
        },
        "loggers": {"vllm": {"handlers": ["stderr"], "level": level.upper(), "propagate": False}},
    }
    fd, path = tempfile.mkstemp(prefix=f"interleave-vllm-logging-{int(time.time())}-", suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(config, f)
    return path
