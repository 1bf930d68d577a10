"""Threaded video sampling: the GOPs that hold picks decoded at once, the same frames bit for bit.

`sample_video` decodes its picks in one pass, forward within a GOP and seeking across GOPs. Each GOP
decodes on its own from its key frame (a seek there, none for the first), so sets of GOPs that hold
picks can decode in parallel, each with its own demuxer over the same bytes (PyAV releases the GIL
while FFmpeg decodes). `gop_ranges` shares a `VideoPlan`'s GOPs out into sets of about equal decode
cost, `decode_gop_range` decodes one set (forward in time), `merge_gop_runs` joins the runs into the
`VideoFrames` that `sample_video` returns, or gives None when a run had a decode error, a seek that
overshot or a missing frame: the caller then runs `sample_video` itself (whose careful second pass
handles damaged files), so the result is always exactly `sample_video`'s. `gop_runs` hands the
sets to the probed container and the spare ones (`open_spare`). `sample_video_threaded` does all of
it on its own threads; the async `MediaLoader` runs the same steps as tasks on its worker pool.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import av
import numpy as np

from server.media.base import MediaLimits
from server.media.gop import AV_ERRORS, PickDecoder, SharedFrames
from server.media.video import (
    VideoFrames,
    VideoPlan,
    _frames_of,
    open_and_plan_video,
    open_video,
    sample_planned_video,
    sample_video,
)

__all__ = [
    "close_all",
    "decode_gop_range",
    "gop_groups",
    "gop_ranges",
    "gop_runs",
    "merge_gop_runs",
    "open_spare",
    "sample_video_threaded",
]


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
    """The GOP groups of `plan` shared out into at most `parts` sets of whole GOPs with about equal
    decode cost, each set's picks in time order (one demuxer and decoder per set, seeking from GOP
    to GOP forward as `sample_video` does), and the FFmpeg decoder threading to use.

    The sets need not be contiguous in time: the largest GOPs go first, each to the set with the
    least cost so far (longest processing time first), then single moves and swaps between the
    costliest set and the others while they lower the largest cost. On a 60 s 720p x264 clip with
    7 GOPs holding 16 picks, contiguous ranges split 752 / 583 frames; this gives 677 / 658.

    Threading: "SLICE" when the sets are balanced (they keep the cores busy; slice threads also
    use a core the other set has left, and frame threads would only add a pipeline refill per
    seek), else "AUTO" (frame + slice threads also spread one long GOP over the cores).
    """
    groups = gop_groups(plan)
    costs = [_cost(plan, g) for g in groups]
    parts = max(1, min(parts, len(groups)))
    members = _balanced_sets(costs, parts)
    ranges = [sorted(p for i in m for p in groups[i]) for m in members]
    loads = [sum(costs[i] for i in m) for m in members]
    balanced = len(ranges) > 1 and max(loads) <= 0.6 * max(sum(costs), 1)
    return ranges, "SLICE" if balanced else "AUTO"


def _balanced_sets(costs: list[int], parts: int) -> list[list[int]]:
    """Indices of `costs` in `parts` non-empty sets (parts <= len(costs)) whose largest sum is
    small: longest processing time first, then improving moves and swaps out of the costliest
    set. Deterministic; sets ordered by their first index."""
    sets: list[list[int]] = [[] for _ in range(parts)]
    loads = [0] * parts
    for i in sorted(range(len(costs)), key=lambda i: (-costs[i], i)):
        j = min(range(parts), key=lambda j: (loads[j], j))
        sets[j].append(i)
        loads[j] += costs[i]
    improved = True
    while improved:
        improved = False
        top = max(range(parts), key=lambda j: loads[j])
        for other in range(parts):
            if other == top:
                continue
            best: tuple[int, int | None, int | None] = (max(loads[top], loads[other]), None, None)
            for a in sets[top]:
                if len(sets[top]) > 1 and max(loads[top] - costs[a], loads[other] + costs[a]) < best[0]:
                    best = (max(loads[top] - costs[a], loads[other] + costs[a]), a, None)
                for b in sets[other]:
                    d = costs[a] - costs[b]
                    if max(loads[top] - d, loads[other] + d) < best[0]:
                        best = (max(loads[top] - d, loads[other] + d), a, b)
            _, move, back = best
            if move is None:
                continue
            sets[top].remove(move)
            sets[other].append(move)
            loads[top] -= costs[move]
            loads[other] += costs[move]
            if back is not None:
                sets[other].remove(back)
                sets[top].append(back)
                loads[other] -= costs[back]
                loads[top] += costs[back]
            improved = True
            break
    return sorted((sorted(s) for s in sets), key=lambda s: s[0])


def decode_gop_range(
    plan: VideoPlan,
    picks: list[int],
    thread_type: str = "SLICE",
    *,
    container: av.container.InputContainer,
    fresh: bool,
    shared: SharedFrames | None = None,
) -> PickDecoder:
    """Decode the picks of one entry of `gop_ranges` with a demuxer of its own over the same source:
    a seek to the set's first key frame (none in the first GOP of a fresh container), then forward
    within each GOP and a seek to the next, as `sample_video`. `container`: one opened over
    `plan.source` (`fresh`: just opened, at the start; False: the probed container of
    `open_and_plan_video`); it is closed when done. `thread_type`: FFmpeg's decoder threading (see
    `gop_ranges`); the decoded pixels are the same either way. `shared`: the frames go to their
    rows of `plan.wanted` in it (see `merge_gop_runs`)."""
    decoder = PickDecoder(
        plan.probe, picks, allow_seek=True, careful=False, thread_type=thread_type, shared=shared
    )
    return decoder.run(container, fresh=fresh)


def gop_runs(
    plan: VideoPlan,
    probed: av.container.InputContainer,
    spares: list[av.container.InputContainer],
) -> tuple[list[tuple[list[int], av.container.InputContainer, bool]], str]:
    """The sets of `gop_ranges(plan, 1 + len(spares))`, each with the container that decodes it and
    whether that container is fresh: the first set gets `probed` (not fresh), the others the
    `spares`; the spares left over are closed. One entry means one GOP holds every pick (the caller
    then runs `sample_planned_video` on `probed`). Also the decoder threading of `gop_ranges`."""
    ranges, thread_type = gop_ranges(plan, 1 + len(spares))
    close_all(spares[len(ranges) - 1 :])
    containers = [probed, *spares[: len(ranges) - 1]]
    return [
        (picks, c, i > 0) for i, (picks, c) in enumerate(zip(ranges, containers, strict=True))
    ], thread_type


def open_spare(source: bytes | str | Path) -> av.container.InputContainer | None:
    """`open_video(source)`, or None when FFmpeg cannot open it (the planning pass then reports
    why). The threaded samplers open their further containers while the first one is probed."""
    try:
        return open_video(source)
    except AV_ERRORS + (ValueError,):
        return None


def close_all(containers: Iterable[av.container.InputContainer | None]) -> None:
    """Close the containers that were not handed to a decoder."""
    for container in containers:
        if container is not None:
            container.close()


def merge_gop_runs(
    plan: VideoPlan, runs: list[PickDecoder], shared: SharedFrames | None = None
) -> VideoFrames | None:
    """The sampled video from the runs of `gop_ranges(plan, n)`, or None when any run had a decode
    error, a seek that overshot, or a missing frame: the caller then runs the sequential
    `sample_video`, whose careful second pass handles damaged files (so the result is always
    exactly what `sample_video` returns). `shared`: the runs wrote into it (no copy is made), else
    each run holds its own frames."""
    if any(r.errors or r.overshot or len(r.actual) < len(r.wanted) for r in runs):
        return None
    if shared is not None:
        frames = shared.array
    elif len(runs) == 1:
        frames = runs[0].frames
    else:  # each run's rows are its picks in time order; the sets interleave in time
        decoded = [r.frames for r in runs if r.frames is not None]
        if len(decoded) != len(runs) or len({f.shape[1:] for f in decoded}) != 1:
            return None  # the size changed mid-stream: the sequential path keeps the first size
        row = {pts: i for i, pts in enumerate(plan.wanted)}
        frames = np.empty((len(plan.wanted), *decoded[0].shape[1:]), dtype=np.uint8)
        for r, f in zip(runs, decoded, strict=True):
            frames[[row[w] for w in r.wanted]] = f[: len(r.wanted)]
    if frames is None:
        return None
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
    """`sample_video` with the GOPs holding picks decoded in `threads` sets at once, each with its
    own demuxer over the same bytes. Returns exactly the frames (and every other field but
    `decoded_frames`) of `sample_video`; `threads` <= 1 or a single GOP is `sample_video` itself.

    The further containers are opened (FFmpeg reads the header and decodes a first frame: about
    23 ms for a 9 MiB 720p MP4) while the first one is probed, and the probed one decodes the first
    set, so nothing is opened or demuxed twice on the critical path.

    Raises MediaError as `sample_video`.
    """
    if threads <= 1:
        return sample_video(source, num_frames=num_frames, fps=fps, limits=limits)
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="gop") as pool:
        planned = pool.submit(open_and_plan_video, source, num_frames=num_frames, fps=fps, limits=limits)
        spares: list[Future[av.container.InputContainer | None]] = [
            pool.submit(open_spare, source) for _ in range(threads - 1)
        ]
        try:
            plan, probed = planned.result()
        finally:
            opened = [c for c in (f.result() for f in spares) if c is not None]
            if planned.exception() is not None:
                close_all(opened)
        sets, thread_type = gop_runs(plan, probed, opened)
        if len(sets) <= 1:
            return sample_planned_video(plan, probed)
        shared = SharedFrames(plan.wanted)
        jobs = [
            pool.submit(decode_gop_range, plan, picks, thread_type, container=c, fresh=fresh, shared=shared)
            for picks, c, fresh in sets
        ]
        try:
            runs = [job.result() for job in jobs]
        except AV_ERRORS + (ValueError,):
            runs = []
    video = merge_gop_runs(plan, runs, shared) if runs else None
    return video if video is not None else sample_video(source, num_frames=num_frames, fps=fps, limits=limits)
