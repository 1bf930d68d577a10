"""Write small real media files with Pillow and PyAV (test-only; the SDK itself needs neither)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

IMAGE_FORMATS = {"png": "PNG", "jpeg": "JPEG", "gif": "GIF", "webp": "WEBP", "bmp": "BMP", "tiff": "TIFF"}
# container -> (file suffix, PyAV format, codec)
VIDEO_FORMATS = {
    "mp4": (".mp4", "mp4", "libx264"),
    "mov": (".mov", "mov", "libx264"),
    "mkv": (".mkv", "matroska", "libx264"),
    "webm": (".webm", "webm", "libvpx"),
    "avi": (".avi", "avi", "mpeg4"),
    "ts": (".ts", "mpegts", "libx264"),
}


def make_image(path: Path, fmt: str = "PNG", color=(200, 30, 30), size=(32, 24)) -> Path:
    from PIL import Image

    Image.new("RGB", size, color).save(path, format=fmt)
    return path


def make_images(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return {name: make_image(folder / f"img.{name}", fmt) for name, fmt in IMAGE_FORMATS.items()}


def make_video(
    path: Path, fmt: str = "mp4", codec: str = "libx264", frames: int = 8, fps: int = 4, size=(64, 48)
) -> Path:
    """A short clip whose frames change colour, so sampled frames differ."""
    import av
    import numpy as np

    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            stream.options = {"preset": "ultrafast"}
        stream.time_base = Fraction(1, fps)
        for i in range(frames):
            arr = np.zeros((size[1], size[0], 3), dtype=np.uint8)
            arr[..., 0] = (i * 30) % 256
            arr[..., 1] = 255 - (i * 30) % 256
            frame = av.VideoFrame.from_ndarray(arr, format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def make_videos(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return {
        name: make_video(folder / f"clip{suffix}", fmt, codec)
        for name, (suffix, fmt, codec) in VIDEO_FORMATS.items()
    }
