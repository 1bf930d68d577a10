"""server.media.loader: decoding in the loader's threads, every URL kind, errors naming the URL."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest
from media_support import (
    LIMITS,
    LocalServer,
    load,
    load_video,
    rgb,
)
from PIL import Image

from harness.media import data_url, encode_video, png_bytes
from server.media import ImageDecoder, MediaError, MediaLimits, MediaLoader, VideoFrames, sample_video


@pytest.fixture(scope="module")
def clip_60() -> bytes:
    """4 s at 15 fps (60 frames), x264's default GOP."""
    return encode_video(60, 15)


def test_decoding_runs_in_the_loader_threads(monkeypatch, small_png):
    seen = []
    real = ImageDecoder.decode

    def spy(self, data):
        seen.append(threading.current_thread().name)
        return real(self, data)

    monkeypatch.setattr(ImageDecoder, "decode", spy)
    load(data_url(small_png))
    assert len(seen) == 1 and seen[0].startswith("media")
    assert seen[0] != threading.main_thread().name


def test_video_from_path_file_url_and_http(tmp_path, clip_60):
    path = tmp_path / "clip.mp4"
    path.write_bytes(clip_60)
    assert sample_video(path, num_frames=4).frame_indices == [7, 22, 37, 52]
    via_file = load_video(path.as_uri(), MediaLimits(allowed_media_dir=tmp_path), num_frames=4)
    assert via_file.frame_indices == [7, 22, 37, 52]
    with LocalServer({"/clip.mp4": (200, {"Content-Type": "video/mp4"}, clip_60)}) as server:
        limits = MediaLimits(allowed_remote_hosts=("127.0.0.1",))
        via_http = load_video(server.url("/clip.mp4"), limits, num_frames=4)
    assert np.array_equal(via_http.frames, via_file.frames)


def test_video_error_names_the_url():
    url = data_url(b"This is a text file.\n" * 10, "video/mp4")
    with pytest.raises(MediaError, match="not a video") as info:
        load_video(url)
    assert str(info.value).startswith("data:video/mp4;base64,")


def test_an_image_a_video_and_a_scene_in_one_message_load_in_order(small_png, clip_60):
    views = [png_bytes(Image.new("RGB", (16, 12), (c, c, c))) for c in (10, 20, 30)]

    async def go():
        loader = MediaLoader(LIMITS)
        try:
            return await asyncio.gather(
                loader.load_image(data_url(small_png)),
                loader.load_video(data_url(clip_60, "video/mp4"), num_frames=4),
                *(loader.load_image(data_url(v)) for v in views),
            )
        finally:
            await loader.aclose()

    image, video, *scene = asyncio.run(go())
    assert image.size == (8, 8)
    assert isinstance(video, VideoFrames) and len(video.frames) == 4
    assert [rgb(v)[0] for v in scene] == [10, 20, 30]
