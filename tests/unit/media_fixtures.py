"""Media made inside the tests: images with Pillow, H.264 clips with PyAV, a local HTTP server.

Video frames carry their own index: the left half of frame k is flat grey 8 + 4k (k < 60), the
right half scrolling noise (B-frames, realistic packet sizes); `frame_index(rgb)` reads k back.
"""

from __future__ import annotations

import base64
import io
import os
import struct
import tempfile
import threading
import time
import zlib
from fractions import Fraction
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import av
import numpy as np
from PIL import Image


def png_bytes(img: Image.Image, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", **kwargs)
    return buf.getvalue()


def image_bytes(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


def png_with_declared_size(width: int, height: int, idat_bytes: int = 4096) -> bytes:
    """A small PNG whose IHDR declares width x height 8-bit grey pixels (data far too short)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * idat_bytes)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def grey_of(k: int) -> int:
    return 8 + 4 * k


def frame_index(rgb: np.ndarray) -> int:
    """Index k encoded in a frame made by `encode_h264` (reads the flat left half)."""
    h, w = rgb.shape[:2]
    return int(round((float(rgb[h // 4 : 3 * h // 4, 2 : w // 2 - 2].mean()) - 8) / 4))


def encode_h264(
    n_frames: int,
    fps: int = 15,
    *,
    size: tuple[int, int] = (64, 48),
    gop: int | None = None,
    pts: list[int] | None = None,
    time_base: Fraction | None = None,
    rotation: float | None = None,
    container: str = "mp4",
    faststart: bool = False,
    marker: bool = False,
) -> bytes:
    """Encode an H.264 clip with frames made by `grey_of` (see module doc); returns its bytes.

    pts/time_base give explicit (variable) frame times; rotation sets the display matrix
    (degrees counter-clockwise); marker paints a red 6x6 square in the top-left corner.
    The right half is a noise texture scrolling by 2 pixels a frame: predictable motion, so x264
    uses B-frames, and packets of realistic size.
    """
    width, height = size
    fd, path = tempfile.mkstemp(suffix=f".{container}")
    os.close(fd)
    try:
        options = {"movflags": "faststart"} if faststart else {}
        with av.open(path, "w", format=container, options=options) as out:
            stream = out.add_stream("libx264", rate=fps)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            opts = {"crf": "10", "preset": "veryfast"}
            if gop is not None:
                opts["g"] = str(gop)
            stream.options = opts
            if time_base is not None:
                stream.codec_context.time_base = time_base
                stream.time_base = time_base
            if rotation is not None:
                stream.set_display_rotation(rotation)
            texture = np.random.default_rng(0).integers(0, 256, (height, width - width // 2, 3))
            for k in range(n_frames):
                img = np.full((height, width, 3), grey_of(k), np.uint8)
                img[:, width // 2 :] = np.roll(texture, 2 * k, axis=1)
                if marker:
                    img[:6, :6] = (255, 0, 0)
                frame = av.VideoFrame.from_ndarray(img, format="rgb24")
                if pts is not None:
                    frame.pts = pts[k]
                    frame.time_base = time_base
                for packet in stream.encode(frame):
                    out.mux(packet)
            for packet in stream.encode():
                out.mux(packet)
        with open(path, "rb") as fh:
            return fh.read()
    finally:
        os.unlink(path)


def packet_spans(data: bytes) -> list[tuple[int, int, bool]]:
    """(byte offset, size, is_keyframe) of every video packet, in decode order."""
    with av.open(io.BytesIO(data)) as container:
        return [
            (p.pos, p.size, p.is_keyframe)
            for p in container.demux(video=0)
            if p.size and p.pos is not None and p.pos >= 0
        ]


def corrupt_packets(data: bytes, first: int, stop: int, seed: int = 1) -> bytes:
    """Overwrite the payload of video packets first..stop-1 (decode order) with random bytes."""
    out = bytearray(data)
    rng = np.random.default_rng(seed)
    for pos, size, _ in packet_spans(data)[first:stop]:
        out[pos : pos + size] = rng.bytes(size)
    return bytes(out)


def decode_all(data: bytes) -> list[np.ndarray]:
    """Every frame of the first video stream as RGB, in presentation order (reference decoder)."""
    with av.open(io.BytesIO(data)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


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

    def __enter__(self) -> "LocalServer":
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
