"""A tiny real HTTP server on 127.0.0.1 for fault injection (retries, broken streams, error events).

It answers from a script: each request takes the next :class:`Reply` (the last one repeats), and its
arrival (monotonic time, method, path, headers, JSON body) is recorded. It is not a model server.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Optional, Sequence, Union


@dataclass
class Reply:
    """One scripted answer.

    status / headers / body: the response (``body`` dict -> JSON). ``delay``: seconds to wait before
    answering. ``drop``: close the connection without answering (a connection error for the client).
    ``events``: a streamed 200 answer, written piece by piece: bytes are sent as they are, a float
    sleeps that many seconds, ``"drop"`` closes the connection there.
    """

    status: int = 200
    headers: Dict[str, str] = field(default_factory=dict)
    body: Any = None
    delay: float = 0.0
    drop: bool = False
    events: Optional[Sequence[Union[bytes, float, str]]] = None


@dataclass
class Arrival:
    time: float
    method: str
    path: str
    headers: Dict[str, str]
    body: Any


def sse(obj: Any) -> bytes:
    """One SSE event ``data: <json>\\n\\n`` (``obj`` may be the string ``[DONE]``)."""
    data = obj if isinstance(obj, str) else json.dumps(obj)
    return f"data: {data}\n\n".encode()


def completion(content: str = "hello", *, model: str = "stub-model", prompt_tokens: int = 735) -> Dict[str, Any]:
    """A chat.completion body in OpenAI's schema."""
    return {
        "id": "chatcmpl-stub",
        "object": "chat.completion",
        "created": 1700000000,
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 2, "total_tokens": prompt_tokens + 2},
    }


def chunk(content: Optional[str] = None, *, role: Optional[str] = None, finish: Optional[str] = None,
          usage: Optional[Dict[str, int]] = None) -> Dict[str, Any]:
    """A chat.completion.chunk body; with ``usage`` it is the usage-only chunk (``choices: []``)."""
    base = {"id": "chatcmpl-stub", "object": "chat.completion.chunk", "created": 1700000000, "model": "stub-model"}
    if usage is not None:
        return {**base, "choices": [], "usage": usage}
    delta: Dict[str, Any] = {}
    if role:
        delta["role"] = role
    if content is not None:
        delta["content"] = content
    return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def stream_events(*pieces: str, usage: bool = False) -> List[bytes]:
    """A well-formed stream: a role chunk, one chunk per piece, a finish chunk, [usage,] [DONE]."""
    events = [sse(chunk(role="assistant", content=""))]
    events += [sse(chunk(p)) for p in pieces]
    events.append(sse(chunk(finish="stop")))
    if usage:
        events.append(sse(chunk(usage={"prompt_tokens": 5, "completion_tokens": len(pieces), "total_tokens": 5 + len(pieces)})))
    events.append(sse("[DONE]"))
    return events


MODELS = {"object": "list", "data": [{"id": "stub-model", "object": "model", "created": 0, "owned_by": "stub"}]}


class StubServer:
    """Scripted HTTP/1.1 server on 127.0.0.1:<free port>, in a daemon thread. Use as a context manager."""

    def __init__(self, script: Sequence[Reply], *, models: Any = MODELS) -> None:
        self.script = list(script)
        self.models = models
        self.arrivals: List[Arrival] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    @property
    def chat_arrivals(self) -> List[Arrival]:
        return [a for a in self.arrivals if a.path.endswith("/chat/completions")]

    def __enter__(self) -> "StubServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _next(self) -> Reply:
        with self._lock:
            n = len([a for a in self.arrivals if a.path.endswith("/chat/completions")])
            return self.script[min(n - 1, len(self.script) - 1)]

    def _handler(self) -> type:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def _record(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw
                with server._lock:
                    server.arrivals.append(
                        Arrival(time.monotonic(), self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                    )

            def do_GET(self) -> None:
                self._record()
                if self.path.endswith("/models"):
                    self._send(Reply(body=server.models, headers={"x-request-id": "req-models"}))
                else:
                    self._send(Reply(status=404, body={"error": {"message": "not found", "type": "not_found_error", "param": None, "code": None}}))

            def do_POST(self) -> None:
                self._record()
                self._send(server._next())

            def _send(self, reply: Reply) -> None:
                if reply.delay:
                    time.sleep(reply.delay)
                if reply.drop:
                    self.close_connection = True
                    try:
                        self.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    return
                if reply.events is not None:
                    self.send_response(reply.status)
                    self.send_header("content-type", "text/event-stream")
                    self.send_header("connection", "close")
                    for k, v in reply.headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.close_connection = True
                    try:
                        for ev in reply.events:
                            if isinstance(ev, (int, float)):
                                time.sleep(ev)
                            elif ev == "drop":
                                self.wfile.flush()
                                self.connection.shutdown(socket.SHUT_RDWR)
                                return
                            else:
                                self.wfile.write(ev)  # type: ignore[arg-type]
                                self.wfile.flush()
                    except OSError:  # the client went away (e.g. it closed the stream early)
                        pass
                    return
                payload = reply.body
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode() if payload is not None else b""
                self.send_response(reply.status)
                if not isinstance(payload, bytes):
                    self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        return Handler
