"""server.media.video: uniform sampling over the real duration, GOP-aware decoding, damaged clips."""

from __future__ import annotations

import io
from fractions import Fraction

import numpy as np
import pytest
from media_support import load_video

from harness.media import (
    corrupt_packets,
    data_url,
    decode_all,
    encode_video,
    frame_index,
    packet_spans,
)
from server.media import MediaError, MediaLimits, sample_video


@pytest.fixture(scope="module")
def clip_60() -> bytes:
    """4 s at 15 fps (60 frames), x264's default GOP."""
    return encode_video(60, 15)


def expected_centres(n_source: int, count: int) -> list[int]:
    """Frame indices at the centres of `count` equal segments of a constant-rate clip."""
    return sorted({int((i + 0.5) * n_source / count) for i in range(count)})


@pytest.mark.parametrize(
    "bad", [b"", b"\x00", np.random.default_rng(3).bytes(20000), b"This is a text file.\n" * 50]
)
def test_random_bytes_empty_file_text_file_are_not_videos(bad):
    with pytest.raises(MediaError):
        sample_video(bad)


def test_audio_file_and_playlist_are_not_videos():
    import wave

    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(8000)
        w.writeframes(b"\x00\x01" * 8000)
    playlist = b"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n"
    for data in (buf.getvalue(), playlist):
        with pytest.raises(MediaError, match="not a video"):
            sample_video(data)


def test_image_is_not_a_video(small_png):
    with pytest.raises(MediaError, match="not a video"):
        sample_video(small_png)


@pytest.mark.parametrize("num_frames", [0, -1, 65, True, 2.5])
def test_num_frames_zero_negative_or_above_maximum_is_rejected(clip_60, num_frames):
    with pytest.raises(MediaError, match="num_frames"):
        sample_video(clip_60, num_frames=num_frames)
    with pytest.raises(MediaError, match="num_frames"):
        load_video(data_url(clip_60, "video/mp4"), num_frames=num_frames)


def test_num_frames_maximum_is_configurable(clip_60):
    with pytest.raises(MediaError, match="between 1 and 8"):
        sample_video(clip_60, num_frames=9, limits=MediaLimits(max_frames=8))
    assert len(sample_video(clip_60, num_frames=8, limits=MediaLimits(max_frames=8)).frames) == 8


@pytest.mark.parametrize("fps", [0, -1.0, float("nan"), float("inf")])
def test_bad_fps_is_rejected(clip_60, fps):
    with pytest.raises(MediaError, match="fps"):
        sample_video(clip_60, fps=fps)
    with pytest.raises(MediaError, match="fps"):
        load_video("http://10.0.0.1/never-fetched.mp4", fps=fps)  # checked before any fetch


def test_frames_are_uniform_over_the_duration(clip_60):
    video = sample_video(clip_60, num_frames=4)
    assert video.frames.shape == (4, 48, 64, 3) and video.frames.dtype == np.uint8
    assert video.frame_indices == expected_centres(60, 4) == [7, 22, 37, 52]
    assert [frame_index(f) for f in video.frames] == video.frame_indices
    assert video.timestamps == pytest.approx([k / 15 for k in video.frame_indices])
    assert video.duration == pytest.approx(4.0)
    assert video.num_source_frames == 60 and video.source_fps == pytest.approx(15.0)


@pytest.mark.parametrize("gop", [None, 1, 5, 12])
@pytest.mark.parametrize("container", ["mp4", "matroska", "mpegts"])
@pytest.mark.parametrize("num_frames", [3, 16])
def test_gop_aware_sampling_equals_decoding_every_frame(gop, container, num_frames):
    data = encode_video(45, 15, gop=gop, container=container)
    reference = decode_all(data)
    video = sample_video(data, num_frames=num_frames)
    assert video.frame_indices == expected_centres(45, num_frames)
    for frame, index in zip(video.frames, video.frame_indices, strict=True):
        assert np.array_equal(frame, reference[index])


@pytest.mark.parametrize("container", ["mp4", "matroska", "mpegts", "avi"])
def test_sampler_seeks_across_gops_instead_of_decoding_everything(container):
    data = encode_video(60, 15, gop=10, container=container)
    video = sample_video(data, num_frames=2)
    assert video.frame_indices == [15, 45]
    assert video.decoded_frames <= 2 * 10 + 4  # two partial GOPs (+ decoder delay), not 60


def test_sampler_skips_unwanted_b_frames_and_stays_exact():
    data = encode_video(60, 15)  # one GOP, B-frames
    reference = decode_all(data)
    video = sample_video(data, num_frames=4)
    assert video.frame_indices == [7, 22, 37, 52]
    assert video.decoded_frames < 52  # non-reference frames nobody wants are not decoded
    assert all(
        np.array_equal(f, reference[i]) for f, i in zip(video.frames, video.frame_indices, strict=True)
    )


def test_fps_sampling_and_its_cap(clip_60):
    video = sample_video(clip_60, fps=2)
    assert len(video.frames) == 8  # 4 s * 2 fps
    assert np.allclose(np.diff(video.timestamps), 0.5, atol=1 / 15 + 1e-6)
    capped = sample_video(clip_60, num_frames=10, fps=30, limits=MediaLimits(max_frames=10))
    assert len(capped.frames) == 10 and capped.frame_indices == expected_centres(60, 10)


def test_num_frames_caps_fps_sampling_spread_over_the_whole_clip(clip_60):
    video = sample_video(clip_60, num_frames=4, fps=5)
    assert len(video.frames) == 4
    # spread over the whole duration, not the first four fifths of a second
    assert video.timestamps[-1] > 0.7 * video.duration


def test_2_second_clip_at_1_fps_with_16_frames_gives_the_frames_it_has():
    data = encode_video(2, 1)
    video = sample_video(data, num_frames=16)
    assert video.frames.shape[0] == 2
    assert video.frame_indices == [0, 1] and video.timestamps == pytest.approx([0.0, 1.0])
    assert [frame_index(f) for f in video.frames] == [0, 1]
    assert video.duration == pytest.approx(2.0)


def test_variable_frame_rate_clip_gives_requested_frames_over_real_duration():
    # 30 frames 10 ms apart, then 10 frames 200 ms apart: 2.3 s, most frames in the first 0.3 s.
    pts = [k * 10 for k in range(30)] + [300 + k * 200 for k in range(10)]
    data = encode_video(40, 25, pts=pts, time_base=Fraction(1, 1000))
    video = sample_video(data, num_frames=8)
    assert len(video.frames) == 8
    assert [frame_index(f) for f in video.frames] == video.frame_indices
    # Spread in time, not in frame count: most samples come from the slow second part.
    assert sum(t >= 0.3 for t in video.timestamps) >= 6
    assert video.timestamps[-1] > 1.8
    segment = video.duration / 8
    for i, t in enumerate(video.timestamps):
        assert (i + 0.5) * segment - 0.2 - 1e-6 <= t <= (i + 0.5) * segment + 1e-6


def test_vfr_clip_with_long_held_frames_still_gives_requested_distinct_frames():
    # 8 frames, some shown for long: several segment centres fall on the same held frame.
    pts = [0, 100, 150, 700, 800, 1500, 1600, 2000]
    data = encode_video(8, 25, pts=pts, time_base=Fraction(1, 1000))
    for count in (4, 6, 8):
        video = sample_video(data, num_frames=count)
        assert len(video.frames) == count
        assert len(set(video.frame_indices)) == count
        assert video.frame_indices == sorted(video.frame_indices)
        assert [frame_index(f) for f in video.frames] == video.frame_indices
    # fewer frames than requested: each frame once
    assert sample_video(data, num_frames=12).frame_indices == list(range(8))


def test_clip_whose_container_states_more_frames_than_it_holds():
    full = encode_video(60, 15, gop=10, faststart=True)  # index first, so a cut file still opens
    cut = full[: len(full) // 2]
    import av

    with av.open(io.BytesIO(cut)) as container:
        assert container.streams.video[0].frames == 60  # what the header claims
    video = sample_video(cut, num_frames=6)
    assert len(video.frames) == 6
    held = video.num_source_frames
    assert 10 < held < 40
    assert video.duration == pytest.approx(held / 15, abs=0.15)
    assert [frame_index(f) for f in video.frames] == video.frame_indices
    assert video.frame_indices[-1] >= held * 0.7 and video.frame_indices[0] <= held * 0.3


def test_h264_clip_with_corrupted_middle_packets_samples_the_frames_that_decode():
    data = encode_video(60, 15, gop=10)
    broken = corrupt_packets(data, 20, 35)
    video = sample_video(broken, num_frames=8)
    assert 4 <= len(video.frames) <= 8
    assert video.timestamps == sorted(video.timestamps)
    assert len(set(video.frame_indices)) == len(video.frame_indices)
    # Frames before the damage are exact.
    reference = decode_all(data)
    early = [(f, i) for f, i in zip(video.frames, video.frame_indices, strict=True) if i < 18]
    assert early and all(np.array_equal(f, reference[i]) for f, i in early)


def test_h264_clip_with_every_packet_corrupted_is_rejected():
    data = encode_video(30, 15, gop=10)
    broken = corrupt_packets(data, 0, len(packet_spans(data)))
    with pytest.raises(MediaError, match="no frame"):
        sample_video(broken, num_frames=4)


@pytest.mark.parametrize("degrees,k", [(90, 1), (-90, 3), (180, 2)])
def test_rotation_metadata_is_applied(degrees, k):
    data = encode_video(4, 4, rotation=degrees, marker=True)
    video = sample_video(data, num_frames=2)
    stored = decode_all(data)[video.frame_indices[0]]
    expected = np.rot90(stored, k)
    assert video.frames.shape[1:] == expected.shape
    assert np.array_equal(video.frames[0], expected)
    red = np.argwhere((video.frames[0][..., 0] > 200) & (video.frames[0][..., 1] < 60))
    h, w = video.frames.shape[1:3]
    corner = (red[:, 0].mean() > h / 2, red[:, 1].mean() > w / 2)
    # The stored top-left marker ends where a counter-clockwise rotation puts it.
    assert corner == {90: (True, False), -90: (False, True), 180: (True, True)}[degrees]


def test_video_frame_pixel_limit(clip_60):
    with pytest.raises(MediaError, match="64x48 pixels"):
        sample_video(clip_60, limits=MediaLimits(max_image_pixels=64 * 48 - 1))
