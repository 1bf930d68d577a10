"""Helpers of the media unit tests: sync wrappers around MediaLoader, pixel checks, a local HTTP server.

The media itself comes from `harness.media` (the one test media generator).
"""

from __future__ import annotations

import asyncio
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from PIL import Image

from server.media import MediaLimits, MediaLoader, VideoFrames

LIMITS = MediaLimits()


def load(url: str, limits: MediaLimits = LIMITS, **loader_kwargs) -> Image.Image:
    async def go():
        loader = MediaLoader(limits, **loader_kwargs)
        try:
            return await loader.load_image(url)
        finally:
            await loader.aclose()

    return asyncio.run(go())


def load_video(url: str, limits: MediaLimits = LIMITS, **kwargs) -> VideoFrames:
    async def go():
        loader = MediaLoader(limits)
        try:
            return await loader.load_video(url, **kwargs)
        finally:
            await loader.aclose()

    return asyncio.run(go())


def fetch(url: str, limits: MediaLimits, **loader_kwargs) -> bytes:
    async def go():
        loader = MediaLoader(limits, **loader_kwargs)
        try:
            return await loader.fetch(url)
        finally:
            await loader.aclose()

    return asyncio.run(go())


def rgb(img: Image.Image, xy=(0, 0)) -> tuple[int, int, int]:
    assert img.mode == "RGB"
    return img.getpixel(xy)


def close_to(actual, expected, tol=3) -> bool:
    return all(abs(int(a) - int(e)) <= tol for a, e in zip(actual, expected, strict=True))


class LocalServer:
    """An HTTP server on 127.0.0.1 (ephemeral port) serving fixed routes; records every request.

    routes: path -> (status, headers, body) or a callable(handler) that writes the response.
    """

    def __init__(self, routes: dict):
        self.routes = routes
        self.requests: list[tuple[str, str]] = []  # (path, Host header)
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output quiet
                pass

            def do_GET(self):
                server.requests.append((self.path, self.headers.get("Host", "")))
                route = server.routes.get(self.path)
                if route is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if callable(route):
                    route(self)
                    return
                status, headers, body = route
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> LocalServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def slow_route(seconds: float):
    """A route that sends nothing for `seconds` (for fetch timeouts)."""

    def route(handler: BaseHTTPRequestHandler) -> None:
        time.sleep(seconds)
        try:
            handler.send_response(200)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
        except OSError:
            pass

    return route


def unsized_route(body: bytes):
    """A route that sends `body` without Content-Length (read until the connection closes)."""

    def route(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Connection", "close")
        handler.end_headers()
        handler.close_connection = True
        try:
            handler.wfile.write(body)
        except OSError:
            pass

    return route
