"""Threaded video sampling: the GOPs that hold picks decoded at once, the same frames bit for bit.

`sample_video` decodes its picks in one pass, forward within a GOP and seeking across GOPs. Each GOP
decodes on its own from its key frame (a seek there, none for the first), so the GOPs that hold
picks can decode in parallel, each with its own demuxer over the same bytes (PyAV releases the GIL
while FFmpeg decodes). `gop_groups` splits a `VideoPlan`'s picks by GOP, `decode_gop_group` decodes
one group, `merge_gop_runs` joins the runs into the `VideoFrames` that `sample_video` returns, or
gives None when a run had a decode error, a seek that overshot or a missing frame: the caller then
runs `sample_video` itself (whose careful second pass handles damaged files), so the result is
always exactly `sample_video`'s. `sample_video_threaded` does all of it on its own threads; the
async `MediaLoader` runs the groups as tasks on its worker pool instead.
"""

from __future__ import annotations

import bisect
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from server.media.base import MediaLimits
from server.media.gop import AV_ERRORS, PickDecoder
from server.media.video import VideoFrames, VideoPlan, _frames_of, _open_container, plan_video, sample_video

__all__ = ["decode_gop_group", "decoder_threads", "gop_groups", "merge_gop_runs", "sample_video_threaded"]


def gop_groups(plan: VideoPlan) -> list[list[int]]:
    """The wanted pts of `plan` grouped by the key frame at or before each (one group per GOP
    that holds picks), in time order. Each group decodes on its own from its key frame."""
    groups: dict[int, list[int]] = {}
    for pts in plan.wanted:
        groups.setdefault(bisect.bisect_right(plan.probe.keyframes, pts) - 1, []).append(pts)
    return [groups[k] for k in sorted(groups)]


def decoder_threads(groups: int, workers: int) -> str:
    """FFmpeg decoder threading for `groups` GOP groups on `workers` threads: none when there are
    more groups than workers (the groups keep every core busy and frame threads would only add
    pipeline refills at each seek), else FFmpeg's frame + slice threads ("AUTO"), which also
    spread one long GOP over the cores."""
    return "NONE" if groups > workers else "AUTO"


def decode_gop_group(plan: VideoPlan, group: list[int], thread_type: str = "NONE") -> PickDecoder:
    """Decode the picks `group` (one entry of `gop_groups`) with a demuxer of its own over the same
    source: a fresh container, a seek to the group's key frame (none for the first GOP), forward
    to its last pick. `thread_type`: FFmpeg's decoder threading (see `decoder_threads`); the
    decoded pixels are the same either way."""
    return PickDecoder(plan.probe, group, allow_seek=True, careful=False, thread_type=thread_type).run(
        _open_container(plan.source), fresh=True
    )


def merge_gop_runs(plan: VideoPlan, runs: list[PickDecoder]) -> VideoFrames | None:
    """The sampled video from the runs of `gop_groups(plan)` (in order), or None when any run
    had a decode error, a seek that overshot, or a missing frame: the caller then runs the
    sequential `sample_video`, whose careful second pass handles damaged files (so the result is
    always exactly what `sample_video` returns)."""
    if any(r.errors or r.overshot or r.frames is None or len(r.actual) < len(r.wanted) for r in runs):
        return None
    shapes = {r.frames.shape[1:] for r in runs}
    if len(shapes) != 1:  # the size changed mid-stream: the sequential path keeps the first size
        return None
    frames = np.concatenate([r.frames[: len(r.actual)] for r in runs]) if len(runs) > 1 else runs[0].frames
    actual = {w: p for r in runs for w, p in r.actual.items()}
    return _frames_of(plan, frames, actual, sum(r.decoded for r in runs))


def sample_video_threaded(
    source: bytes | str | Path,
    *,
    num_frames: int = 16,
    fps: float | None = None,
    limits: MediaLimits = MediaLimits(),
    threads: int = 2,
) -> VideoFrames:
    """`sample_video` with the GOPs holding picks decoded on `threads` threads, each with its own
    demuxer over the same bytes. Returns exactly the frames (and every other field but
    `decoded_frames`) of `sample_video`; `threads` <= 1 or a single GOP is `sample_video` itself.

    Raises MediaError as `sample_video`.
    """
    plan = plan_video(source, num_frames=num_frames, fps=fps, limits=limits)
    groups = gop_groups(plan)
    if threads <= 1 or len(groups) <= 1:
        return sample_video(source, num_frames=num_frames, fps=fps, limits=limits)
    try:
        workers = min(threads, len(groups))
        thread_type = decoder_threads(len(groups), workers)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gop") as pool:
            runs = list(pool.map(lambda g: decode_gop_group(plan, g, thread_type), groups))
    except AV_ERRORS + (ValueError,):
        runs = []
    video = merge_gop_runs(plan, runs) if runs else None
    return video if video is not None else sample_video(source, num_frames=num_frames, fps=fps, limits=limits)
