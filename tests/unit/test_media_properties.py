"""Malformed media is a MediaError (HTTP 400), never another exception and never a hang.

Hypothesis takes a valid sample file of each kind (`harness.mutate.sample_files`: PNG, JPEG, GIF,
WebP images; MP4 with its index (moov) first and last, MKV and WebM clips) and applies 1-4
mutations: bit flips, byte insertions and deletions, truncation, header fields (PNG chunks, JPEG
segments, GIF descriptors, RIFF chunks, MP4 boxes, Matroska elements) overwritten with extreme
values. Each case must decode to a usable result (an 8-bit RGB image; at least one (H, W, 3) uint8
frame with its timestamp) or raise `MediaError`. Each decode runs in a daemon thread joined with
a deadline, so a hang fails the test instead of blocking it.

The runs are derandomized (the same cases every run, no example database); set
MEDIA_PROPERTY_EXAMPLES=20000 (and MEDIA_PROPERTY_RANDOM=1 for fresh cases) to explore more.
"""

from __future__ import annotations

import functools
import os
import threading
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from harness import mutate
from server.media import MediaError, decode_image, sample_video
from server.media.threaded import sample_video_threaded

CASE_DEADLINE_SECONDS = 30.0
"""A hang, not slowness: a case takes milliseconds (generous for 2 busy shared cores)."""

_EXPLORE = int(os.environ.get("MEDIA_PROPERTY_EXAMPLES", "0"))
IMAGE_EXAMPLES = _EXPLORE or 1000
VIDEO_EXAMPLES = _EXPLORE or 300
THREADED_EXAMPLES = _EXPLORE or 100


def _settings(max_examples: int) -> settings:
    # deadline=None: Hypothesis' own per-example deadline would flag a slow shared machine; the
    # bounded thread below catches real hangs.
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=not os.environ.get("MEDIA_PROPERTY_RANDOM"),
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


_positions = st.integers(min_value=0, max_value=2**31 - 1)  # taken modulo the current length
mutation = st.one_of(
    st.tuples(st.just("flip"), _positions, st.integers(0, 7)),
    st.tuples(st.just("insert"), _positions, st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("delete"), _positions, st.integers(1, 64)),
    st.tuples(st.just("truncate"), _positions),
    st.tuples(st.just("field"), _positions, st.sampled_from(mutate.FIELD_VALUES)),
)
mutations = st.lists(mutation, min_size=1, max_size=4)


@functools.cache
def _sample(kind: str) -> tuple[bytes, list[int]]:
    data = mutate.sample_files()[kind]
    return data, mutate.field_offsets(data, kind)


def _bounded(fn, *args: Any, **kwargs: Any) -> Any:
    """fn(*args, **kwargs) in a daemon thread; AssertionError if it runs past the deadline."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread
            outcome["error"] = exc

    thread = threading.Thread(target=run, name="media-property-case", daemon=True)
    thread.start()
    thread.join(CASE_DEADLINE_SECONDS)
    if thread.is_alive():
        raise AssertionError(f"the decode did not finish within {CASE_DEADLINE_SECONDS:g} s (a hang)")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def test_every_sample_file_is_valid_and_has_header_fields():
    for kind in mutate.IMAGE_KINDS + mutate.VIDEO_KINDS:
        data, fields = _sample(kind)
        assert len(fields) >= 8, kind
        if kind in mutate.IMAGE_KINDS:
            assert decode_image(data).size == (24, 16)
        else:
            assert sample_video(data, num_frames=4).frames.shape == (4, 24, 32, 3)


@pytest.mark.parametrize("kind", mutate.IMAGE_KINDS)
@_settings(IMAGE_EXAMPLES)
@given(ops=mutations)
def test_a_mutated_image_decodes_or_is_a_media_error(kind, ops):
    data, fields = _sample(kind)
    broken = mutate.apply(data, ops, fields)
    try:
        image = _bounded(decode_image, broken)
    except MediaError as exc:
        assert str(exc)
        return
    assert image.mode == "RGB" and image.width >= 1 and image.height >= 1
    assert np.asarray(image).dtype == np.uint8


@pytest.mark.parametrize("kind", mutate.VIDEO_KINDS)
@_settings(VIDEO_EXAMPLES)
@given(ops=mutations, num_frames=st.integers(1, 8), fps=st.none() | st.floats(0.5, 30.0))
# Found by this test: a stream whose codec context PyAV leaves unset (an AttributeError, a 500);
# a damaged VP9 clip that crashed FFmpeg's frame-threaded decoder after a seek (a segfault).
@example(ops=[("insert", 54009, b"\x00")], num_frames=1, fps=None)
@example(ops=[("flip", 1032776492, 4), ("truncate", 1435612990)], num_frames=8, fps=None)
def test_a_mutated_video_samples_frames_or_is_a_media_error(kind, ops, num_frames, fps):
    data, fields = _sample(kind)
    broken = mutate.apply(data, ops, fields)
    try:
        video = _bounded(sample_video, broken, num_frames=num_frames, fps=fps)
    except MediaError as exc:
        assert str(exc)
        return
    frames = video.frames
    assert frames.dtype == np.uint8 and frames.ndim == 4 and frames.shape[3] == 3
    assert 1 <= len(frames) <= num_frames
    assert len(video.timestamps) == len(frames) == len(video.frame_indices)
    assert video.timestamps == sorted(video.timestamps)


@pytest.mark.parametrize("kind", mutate.VIDEO_KINDS)
@_settings(THREADED_EXAMPLES)
@given(ops=mutations, num_frames=st.integers(2, 8))
def test_the_threaded_sampler_on_a_mutated_video_samples_frames_or_is_a_media_error(kind, ops, num_frames):
    """The loader's path: the GOPs holding picks decoded in 2 ranges at once, sequential fallback."""
    data, fields = _sample(kind)
    broken = mutate.apply(data, ops, fields)
    try:
        video = _bounded(sample_video_threaded, broken, num_frames=num_frames, threads=2)
    except MediaError:
        return
    assert video.frames.dtype == np.uint8 and 1 <= len(video.frames) <= num_frames
