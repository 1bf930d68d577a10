"""Threaded video sampling: the GOPs that hold picks decoded at once, the same frames bit for bit.

`sample_video` decodes its picks in one pass, forward within a GOP and seeking across GOPs. Each GOP
decodes on its own from its key frame (a seek there, none for the first), so ranges of consecutive
GOPs that hold picks can decode in parallel, each with its own demuxer over the same bytes (PyAV
releases the GIL while FFmpeg decodes). `gop_ranges` splits a `VideoPlan`'s picks into ranges of
whole GOPs of about equal decode cost, `decode_gop_range` decodes one range, `merge_gop_runs` joins
the runs into the `VideoFrames` that `sample_video` returns, or
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

__all__ = ["decode_gop_range", "gop_groups", "gop_ranges", "merge_gop_runs", "sample_video_threaded"]


def gop_groups(plan: VideoPlan) -> list[list[int]]:
    """The wanted pts of `plan` grouped by the key frame at or before each (one group per GOP
    that holds picks), in time order. Each group decodes on its own from its key frame."""
    groups: dict[int, list[int]] = {}
    for pts in plan.wanted:
        groups.setdefault(bisect.bisect_right(plan.probe.keyframes, pts) - 1, []).append(pts)
    return [groups[k] for k in sorted(groups)]


def _cost(plan: VideoPlan, group: list[int]) -> int:
    """Frames from the group's key frame to its last pick (what decoding it takes, roughly)."""
    times, keyframes = plan.probe.times, plan.probe.keyframes
    k = bisect.bisect_right(keyframes, group[-1]) - 1
    first = bisect.bisect_left(times, keyframes[k]) if k >= 0 else 0
    return bisect.bisect_right(times, group[-1]) - first


def gop_ranges(plan: VideoPlan, parts: int) -> tuple[list[list[int]], str]:
    """The GOP groups of `plan` joined into at most `parts` ranges of consecutive GOPs with about
    equal decode cost (one demuxer and decoder per range: seeking across its GOPs as
    `sample_video` does), and the FFmpeg decoder threading to use: "NONE" when the ranges are
    balanced (they keep the cores busy; frame threads would only add a pipeline refill per seek),
    else "AUTO" (frame + slice threads also spread one long GOP over the cores)."""
    groups = gop_groups(plan)
    costs = [_cost(plan, g) for g in groups]
    parts = max(1, min(parts, len(groups)))
    total = sum(costs)
    ranges: list[list[int]] = []
    range_costs: list[int] = []
    current: list[int] = []
    cost = done = 0
    for i, (group, c) in enumerate(zip(groups, costs, strict=True)):
        current.extend(group)
        cost += c
        left = parts - len(ranges) - 1  # ranges still to start after this one
        remaining = len(groups) - i - 1
        if left > 0 and (remaining == left or (remaining > left and cost >= (total - done) / (left + 1))):
            ranges.append(current)
            range_costs.append(cost)
            done += cost
            current, cost = [], 0
    if current:
        ranges.append(current)
        range_costs.append(cost)
    balanced = len(ranges) > 1 and max(range_costs) <= 0.6 * max(total, 1)
    return ranges, "NONE" if balanced else "AUTO"


def decode_gop_range(plan: VideoPlan, picks: list[int], thread_type: str = "NONE") -> PickDecoder:
    """Decode the picks of one entry of `gop_ranges` with a demuxer of its own over the same source:
    a fresh container, a seek to the range's first key frame (none in the first GOP), then forward
    within each GOP and a seek to the next, as `sample_video`. `thread_type`: FFmpeg's decoder
    threading (see `gop_ranges`); the decoded pixels are the same either way."""
    return PickDecoder(plan.probe, picks, allow_seek=True, careful=False, thread_type=thread_type).run(
        _open_container(plan.source), fresh=True
    )


def merge_gop_runs(plan: VideoPlan, runs: list[PickDecoder]) -> VideoFrames | None:
    """The sampled video from the runs of `gop_ranges(plan, n)` (in order), or None when any run
    had a decode error, a seek that overshot, or a missing frame: the caller then runs the
    sequential `sample_video`, whose careful second pass handles damaged files (so the result is
    always exactly what `sample_video` returns)."""
    if any(r.errors or r.overshot or r.frames is None or len(r.actual) < len(r.wanted) for r in runs):
        return None
    decoded = [r.frames for r in runs if r.frames is not None]  # all of them (checked above)
    shapes = {f.shape[1:] for f in decoded}
    if len(shapes) != 1:  # the size changed mid-stream: the sequential path keeps the first size
        return None
    frames = (
        np.concatenate([f[: len(r.actual)] for f, r in zip(decoded, runs, strict=True)])
        if len(runs) > 1
        else decoded[0]
    )
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
    """`sample_video` with the GOPs holding picks decoded in `threads` ranges at once, each with its
    own demuxer over the same bytes. Returns exactly the frames (and every other field but
    `decoded_frames`) of `sample_video`; `threads` <= 1 or a single GOP is `sample_video` itself.

    Raises MediaError as `sample_video`.
    """
    plan = plan_video(source, num_frames=num_frames, fps=fps, limits=limits)
    ranges, thread_type = gop_ranges(plan, threads)
    if len(ranges) <= 1:
        return sample_video(source, num_frames=num_frames, fps=fps, limits=limits)
    try:
        with ThreadPoolExecutor(max_workers=len(ranges), thread_name_prefix="gop") as pool:
            runs = list(pool.map(lambda picks: decode_gop_range(plan, picks, thread_type), ranges))
    except AV_ERRORS + (ValueError,):
        runs = []
    video = merge_gop_runs(plan, runs) if runs else None
    return video if video is not None else sample_video(source, num_frames=num_frames, fps=fps, limits=limits)
