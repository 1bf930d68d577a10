"""Generate small example media (needs Pillow and PyAV: ``pip install pillow av``; the SDK needs neither).

Writes into a temporary folder: two images, an 8-frame H.264 clip and a 3-view "scene" folder.
"""

from __future__ import annotations

import tempfile
from fractions import Fraction
from pathlib import Path


def make_media(folder: str | None = None) -> dict[str, Path]:
    """Create the files and return their paths: ``image``, ``image2``, ``video``, ``scene`` (a folder)."""
    import av
    import numpy as np
    from PIL import Image, ImageDraw

    root = Path(folder or tempfile.mkdtemp(prefix="interleave-example-"))
    (root / "scene").mkdir(parents=True, exist_ok=True)

    def picture(path: Path, color: tuple[int, int, int], label: str) -> Path:
        img = Image.new("RGB", (384, 384), color)
        ImageDraw.Draw(img).text((20, 20), label, fill=(255, 255, 255))
        img.save(path)
        return path

    files = {
        "image": picture(root / "red.png", (200, 40, 40), "a red square"),
        "image2": picture(root / "blue.jpg", (40, 40, 200), "a blue square"),
    }
    for i, (name, color) in enumerate(
        [("front", (90, 160, 90)), ("left", (160, 90, 90)), ("back", (90, 90, 160))]
    ):
        picture(root / "scene" / f"view{i}.png", color, name)
    files["scene"] = root / "scene"

    video = root / "clip.mp4"
    with av.open(str(video), "w") as container:
        stream = container.add_stream("libx264", rate=4)
        stream.width, stream.height, stream.pix_fmt = 128, 128, "yuv420p"
        stream.time_base = Fraction(1, 4)
        for t in range(8):  # a white square moving right over 2 seconds
            arr = np.zeros((128, 128, 3), dtype=np.uint8)
            arr[48:80, t * 12 : t * 12 + 32] = 255
            frame = av.VideoFrame.from_ndarray(arr, format="rgb24")
            frame.pts = t
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    files["video"] = video
    return files
