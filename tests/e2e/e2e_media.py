"""Small media made by the e2e tests themselves (Pillow, PyAV), as bytes and data: URLs."""

from __future__ import annotations

import base64
import io
import struct
import zlib
from fractions import Fraction

import av
import numpy as np
from PIL import Image


def data_url(raw: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(raw).decode()


def png(w: int = 32, h: int = 24, color=(200, 30, 30), mode: str = "RGB") -> bytes:
    img = Image.new("RGB", (w, h), color)
    # a little structure so different images give different features
    px = np.asarray(img).copy()
    px[: h // 2, : w // 2] = 255 - np.asarray(color, np.uint8)
    img = Image.fromarray(px)
    if mode != "RGB":
        img = img.convert(mode)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def png_url(w: int = 32, h: int = 24, color=(200, 30, 30), mode: str = "RGB") -> str:
    return data_url(png(w, h, color, mode))


def rgba_png() -> bytes:
    img = Image.new("RGBA", (16, 16), (255, 0, 0, 0))
    img.putpixel((3, 3), (0, 255, 0, 128))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def la_png() -> bytes:
    buf = io.BytesIO()
    Image.new("LA", (16, 16), (128, 60)).save(buf, format="PNG")
    return buf.getvalue()


def palette_png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (10, 200, 10)).convert("P", palette=Image.Palette.ADAPTIVE).save(buf, format="PNG")
    return buf.getvalue()


def cmyk_jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(buf, format="JPEG")
    return buf.getvalue()


def gray16_png() -> bytes:
    arr = (np.arange(16 * 16, dtype=np.uint16).reshape(16, 16) * 250).astype(np.uint16)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")  # mode I;16
    return buf.getvalue()


def animated_gif() -> bytes:
    frames = [Image.new("RGB", (16, 16), c) for c in [(255, 0, 0), (0, 255, 0), (0, 0, 255)]]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buf.getvalue()


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)


def huge_header_png(side: int = 50_000) -> bytes:
    """A valid-looking PNG of a few KB whose IHDR declares side x side pixels."""
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 4096)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def truncated_png() -> bytes:
    """A PNG cut right after its IHDR chunk (8-byte signature + 25-byte IHDR)."""
    return png(64, 64)[: 8 + 25]


def unpadded_b64_url() -> str:
    raw = png(8, 8)
    b64 = base64.b64encode(raw).decode().rstrip("=")
    assert len(base64.b64encode(raw).decode()) != len(b64), "choose a size whose base64 has padding"
    return "data:image/png;base64," + b64


def h264(frames: int = 8, fps: int = 4, size: tuple[int, int] = (64, 48), *, container: str = "mp4",
         pts_ms: list[int] | None = None, options: dict | None = None, gop: int | None = None) -> bytes:
    """Encode a small H.264 clip (a moving bar). ``pts_ms`` gives variable frame timestamps."""
    import tempfile
    from pathlib import Path

    tmp = tempfile.NamedTemporaryFile(suffix="." + container, delete=False)
    tmp.close()
    with av.open(tmp.name, mode="w", format=container, options=options or {}) as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast", "tune": "zerolatency", **({"g": str(gop)} if gop else {})}
        if pts_ms is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        w, h = size
        for i in range(frames):
            arr = np.zeros((h, w, 3), np.uint8)
            arr[:, (i * 7) % w : (i * 7) % w + 6] = (255, 255, 0)
            arr[..., 2] = (i * 30) % 255
            frame = av.VideoFrame.from_ndarray(arr, format="rgb24")
            if pts_ms is not None:
                frame.pts = pts_ms[i]
                frame.time_base = Fraction(1, 1000)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    raw = Path(tmp.name).read_bytes()
    Path(tmp.name).unlink()
    return raw


def corrupted_middle(raw: bytes) -> bytes:
    """Overwrite a band in the middle of the file (inside the media data) with garbage."""
    data = bytearray(raw)
    mid = len(data) // 2
    rng = np.random.default_rng(0)
    band = max(64, len(data) // 8)
    data[mid - band // 2 : mid + band // 2] = rng.integers(0, 256, band, dtype=np.uint8).tobytes()
    return bytes(data)


def overstated_frame_count(frames: int = 16) -> bytes:
    """An MP4 whose header (moov first, 'faststart') indexes ``frames`` frames but whose media data
    was cut to about two thirds: the container states more frames than it holds."""
    raw = h264(frames=frames, fps=8, options={"movflags": "faststart"})
    return raw[: len(raw) * 2 // 3]


def video_url(raw: bytes, mime: str = "video/mp4") -> str:
    return data_url(raw, mime)
