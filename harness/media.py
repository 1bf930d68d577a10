"""The one generator of test media: images (Pillow), video clips (PyAV), data: URLs, damage.

Used by the unit, adapter, e2e and reliability tests (the SDK's own tests stand alone). Everything
is made in-process and deterministic (fixed seeds).

Video frames made by `encode_video` carry their own index: the left half of frame k is flat grey
`grey_of(k)` = 8 + 4k (k < 60), the right half a scrolling noise texture (predictable motion, so
x264 uses B-frames, and packets of realistic size); `frame_index(rgb)` reads k back.
"""

from __future__ import annotations

import base64
import io
import os
import struct
import tempfile
import zlib
from fractions import Fraction

import av
import numpy as np
from PIL import Image

# ---------------------------------------------------------------------------------------------
# data: URLs
# ---------------------------------------------------------------------------------------------


def data_url(data: bytes, mime: str = "image/png") -> str:
    """``data:<mime>;base64,...`` of `data`."""
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


def video_url(data: bytes, mime: str = "video/mp4") -> str:
    """A data: URL of a video."""
    return data_url(data, mime)


# ---------------------------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------------------------


def image_bytes(img: Image.Image, fmt: str, **kwargs) -> bytes:
    """`img` saved as `fmt` (a Pillow format name: "PNG", "JPEG", "GIF", "WEBP", ...)."""
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def png_bytes(img: Image.Image, **kwargs) -> bytes:
    """`img` as PNG bytes (kwargs go to Pillow's PNG writer: transparency, save_all, ...)."""
    return image_bytes(img, "PNG", **kwargs)


def png(w: int = 32, h: int = 24, color=(200, 30, 30), mode: str = "RGB") -> bytes:
    """A `w` x `h` PNG of `color` with its top-left quarter inverted, converted to `mode`."""
    px = np.empty((h, w, 3), np.uint8)
    px[:] = np.asarray(color, np.uint8)
    px[: h // 2, : w // 2] = 255 - np.asarray(color, np.uint8)
    img = Image.fromarray(px)
    return png_bytes(img if mode == "RGB" else img.convert(mode))


def png_url(w: int = 32, h: int = 24, color=(200, 30, 30), mode: str = "RGB") -> str:
    """`png(...)` as a data: URL."""
    return data_url(png(w, h, color, mode))


def gradient_image(width: int, height: int, seed: int, mode: str = "RGB") -> Image.Image:
    """A `width` x `height` image with gradients and noise (seeded), converted to `mode`."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack(
        [
            (x * 255 // max(width - 1, 1)),
            (y * 255 // max(height - 1, 1)),
            ((x + y) * 127 // max(width + height - 2, 1)),
        ],
        axis=-1,
    )
    noise = rng.integers(0, 64, size=base.shape)
    rgb = Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8), "RGB")
    if mode == "RGB":
        return rgb
    if mode == "RGBA":
        alpha = Image.fromarray(rng.integers(0, 255, (height, width), dtype=np.uint8), "L")
        out = rgb.convert("RGBA")
        out.putalpha(alpha)
        return out
    if mode == "P":
        return rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=32)
    return rgb.convert(mode)


def video_frames(num_frames: int, width: int = 96, height: int = 64, seed: int = 7) -> np.ndarray:
    """(num_frames, height, width, 3) uint8 frames of a moving gradient (frame i: seed + i)."""
    return np.stack([np.asarray(gradient_image(width, height, seed + i)) for i in range(num_frames)])


def rgba_png() -> bytes:
    """16x16 fully transparent red with one half-transparent green pixel."""
    img = Image.new("RGBA", (16, 16), (255, 0, 0, 0))
    img.putpixel((3, 3), (0, 255, 0, 128))
    return png_bytes(img)


def la_png() -> bytes:
    """16x16 grey with alpha (mode LA)."""
    return png_bytes(Image.new("LA", (16, 16), (128, 60)))


def palette_png() -> bytes:
    """16x16 palette (mode P) PNG."""
    return png_bytes(Image.new("RGB", (16, 16), (10, 200, 10)).convert("P", palette=Image.Palette.ADAPTIVE))


def cmyk_jpeg() -> bytes:
    """16x16 CMYK JPEG (pure red)."""
    return image_bytes(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG")


def gray16_png() -> bytes:
    """16x16 16-bit grayscale PNG (mode I;16)."""
    arr = (np.arange(16 * 16, dtype=np.uint16).reshape(16, 16) * 250).astype(np.uint16)
    return png_bytes(Image.fromarray(arr))


def animated_gif(fmt: str = "GIF") -> bytes:
    """A 3-frame 16x16 animation (red, green, blue); `fmt` "GIF", "WEBP" or "PNG" (APNG)."""
    frames = [Image.new("RGB", (16, 16), c) for c in [(255, 0, 0), (0, 255, 0), (0, 0, 255)]]
    return image_bytes(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)


def png_with_declared_size(width: int, height: int, idat_bytes: int = 4096) -> bytes:
    """A small PNG whose IHDR declares `width` x `height` 8-bit grey pixels (data far too short)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * idat_bytes)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def truncated_png() -> bytes:
    """A PNG cut right after its IHDR chunk (8-byte signature + 25-byte IHDR)."""
    return png(64, 64)[: 8 + 25]


def unpadded_b64_url() -> str:
    """A data: URL of an 8x8 PNG whose base64 lost its '=' padding."""
    b64 = base64.b64encode(png(8, 8)).decode()
    assert b64.endswith("="), "choose a size whose base64 has padding"
    return "data:image/png;base64," + b64.rstrip("=")


# ---------------------------------------------------------------------------------------------
# Video
# ---------------------------------------------------------------------------------------------


def grey_of(k: int) -> int:
    """The grey level of the left half of frame k made by `encode_video`."""
    return 8 + 4 * k


def frame_index(rgb: np.ndarray) -> int:
    """Index k encoded in a frame made by `encode_video` (reads the flat left half)."""
    h, w = rgb.shape[:2]
    return int(round((float(rgb[h // 4 : 3 * h // 4, 2 : w // 2 - 2].mean()) - 8) / 4))


def encode_video(
    n_frames: int,
    fps: int = 15,
    *,
    size: tuple[int, int] = (64, 48),
    gop: int | None = None,
    pts: list[int] | None = None,
    time_base: Fraction | None = None,
    rotation: float | None = None,
    container: str = "mp4",
    codec: str = "libx264",
    faststart: bool = False,
    marker: bool = False,
    images: np.ndarray | None = None,
) -> bytes:
    """Encode a clip (H.264 by default) with frames made by `grey_of` (see module doc).

    size: (width, height). gop: key frame interval (codec default if None). pts/time_base:
    explicit (variable) frame times. rotation: display matrix, degrees counter-clockwise.
    container: "mp4", "matroska", "webm", "mpegts", "avi", ... codec: "libx264", "libvpx-vp9"
    (for webm), ... faststart: MP4 with the index (moov) before the media data (else after).
    marker: a red 6x6 square in the top-left corner. images: (n_frames, H, W, 3) uint8 frames to
    encode instead of the indexed ones.
    """
    width, height = size if images is None else (images.shape[2], images.shape[1])
    fd, path = tempfile.mkstemp(suffix=f".{container}")
    os.close(fd)
    try:
        options = {"movflags": "faststart"} if faststart else {}
        with av.open(path, "w", format=container, options=options) as out:
            stream = out.add_stream(codec, rate=fps)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            opts = {"crf": "10", "preset": "veryfast"} if codec == "libx264" else {}
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
                if images is not None:
                    img = np.ascontiguousarray(images[k])
                else:
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


def corrupted_middle(raw: bytes, seed: int = 0) -> bytes:
    """Overwrite a band (1/8 of the file, at least 64 bytes) in the middle with random bytes."""
    data = bytearray(raw)
    mid = len(data) // 2
    band = max(64, len(data) // 8)
    data[mid - band // 2 : mid + band // 2] = (
        np.random.default_rng(seed).integers(0, 256, band, dtype=np.uint8).tobytes()
    )
    return bytes(data)


def overstated_frame_count(frames: int = 16) -> bytes:
    """An MP4 whose index (moov first) lists `frames` frames but whose media data was cut after
    the first two thirds of its packets: the container states more frames than it holds."""
    raw = encode_video(frames, 8, faststart=True)
    ends = sorted(pos + size for pos, size, _ in packet_spans(raw))
    return raw[: ends[len(ends) * 2 // 3 - 1]]


def decode_all(data: bytes) -> list[np.ndarray]:
    """Every frame of the first video stream as RGB, in presentation order (reference decoder)."""
    with av.open(io.BytesIO(data)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def mixed_parts(num_frames: int = 4) -> list[dict]:
    """The mixed request's content parts: text, two images, a video (8 frames at 4 fps, H.264, of
    which ``num_frames`` are sampled) and a 3-view scene with labels, in that order
    (2 + ``num_frames`` + 3 images of 729 visual tokens)."""
    clip = encode_video(8, 4)
    return [
        {"type": "text", "text": "Compare these."},
        {"type": "image_url", "image_url": {"url": png_url(32, 24, (220, 20, 20))}},
        {"type": "image_url", "image_url": {"url": png_url(24, 32, (20, 20, 220))}},
        {"type": "video_url", "video_url": {"url": video_url(clip), "num_frames": num_frames}},
        {
            "type": "scene_views",
            "scene_views": {
                "urls": [png_url(16, 16, c) for c in [(255, 0, 0), (0, 255, 0), (0, 0, 255)]],
                "labels": ["front", "left", "back"],
            },
        },
    ]
