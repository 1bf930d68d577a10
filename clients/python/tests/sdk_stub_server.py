"""A tiny real HTTP server on 127.0.0.1 for fault injection (error statuses, retries, broken streams).

It answers ``POST`` from a script: the n-th chat request gets the n-th :class:`Reply` (the last one
repeats); ``GET /v1/models`` lists one model. Every arrival (method, path, headers, JSON body) is
recorded. It is not a model server.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODELS = {
    "object": "list",
    "data": [{"id": "stub-model", "object": "model", "created": 0, "owned_by": "stub"}],
}


@dataclass
class Reply:
    """One scripted answer: ``status`` / ``headers`` / ``body`` (a dict is sent as JSON). With ``events``
    the answer is a 200 ``text/event-stream`` of those bytes, then the connection closes."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    events: Sequence[bytes] | None = None


@dataclass
class Arrival:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


def sse(obj: Any) -> bytes:
    """One SSE event ``data: <json>\\n\\n`` (``obj`` may be the string ``[DONE]``)."""
    return f"data: {obj if isinstance(obj, str) else json.dumps(obj)}\n\n".encode()


def completion(content: str = "hello", *, prompt_tokens: int = 735) -> dict[str, Any]:
    """A chat.completion body in OpenAI's schema."""
    return {
        "id": "chatcmpl-stub",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "stub-model",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 2, "total_tokens": prompt_tokens + 2},
    }


def chunk(
    content: str | None = None,
    *,
    role: str | None = None,
    finish: str | None = None,
    usage: dict[str, int] | None = None,
) -> dict[str, Any]:
    """A chat.completion.chunk body; with ``usage`` it is the usage-only chunk (``choices: []``)."""
    base = {
        "id": "chatcmpl-stub",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "stub-model",
    }
    if usage is not None:
        return {**base, "choices": [], "usage": usage}
    delta = {k: v for k, v in (("role", role), ("content", content)) if v is not None}
    return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def stream_events(*pieces: str, usage: bool = False) -> list[bytes]:
    """A well-formed stream: a role chunk, one chunk per piece, a finish chunk, [usage,] [DONE]."""
    events = [sse(chunk(role="assistant", content=""))] + [sse(chunk(p)) for p in pieces]
    events.append(sse(chunk(finish="stop")))
    if usage:
        events.append(
            sse(
                chunk(
                    usage={
                        "prompt_tokens": 5,
                        "completion_tokens": len(pieces),
                        "total_tokens": 5 + len(pieces),
                    }
                )
            )
        )
    return events + [sse("[DONE]")]


class StubServer:
    """Scripted HTTP/1.1 server on 127.0.0.1:<free port>, in a daemon thread. Use as a context manager."""

    def __init__(self, script: Sequence[Reply]) -> None:
        self.script = list(script)
        self.arrivals: list[Arrival] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    @property
    def chat_arrivals(self) -> list[Arrival]:
        return [a for a in self.arrivals if a.path.endswith("/chat/completions")]

    def __enter__(self) -> StubServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _handler(self) -> type:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def _record(self) -> int:
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                with server._lock:
                    server.arrivals.append(
                        Arrival(self.command, self.path, headers, json.loads(raw) if raw else None)
                    )
                    return len(server.chat_arrivals)

            def do_GET(self) -> None:
                self._record()
                self._send(Reply(body=MODELS))

            def do_POST(self) -> None:
                n = self._record()
                self._send(server.script[min(n, len(server.script)) - 1])

            def _send(self, reply: Reply) -> None:
                streamed = reply.events is not None
                data = b"" if streamed else json.dumps(reply.body).encode()
                self.send_response(reply.status)
                self.send_header("content-type", "text/event-stream" if streamed else "application/json")
                # a stream ends when the connection closes; a JSON answer has its length
                self.send_header(
                    *(("connection", "close") if streamed else ("content-length", str(len(data))))
                )
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.close_connection = streamed
                try:
                    for piece in reply.events or [data]:
                        self.wfile.write(piece)
                        self.wfile.flush()
                except OSError:  # the client went away (e.g. it closed the stream early)
                    pass

        return Handler
