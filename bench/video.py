"""Video sampling benchmark: our `server.media.sample_video` (and its threaded form) versus vLLM's OpenCV loader.

Generates H.264 clips once into a cache directory (.cache/bench-media/, gitignored), then samples
16 frames from each with both loaders, alternating them round by round, and prints per clip:
best-of-N seconds, peak RSS growth during the call (sampled every 2 ms by a thread; includes
FFmpeg / OpenCV buffers, which tracemalloc would not see), the ratio opencv / ours, and how far
the two loaders' frame indices are apart (they place samples differently: vLLM takes
linspace(0, n - 1, k) of the header's frame count, we take the centres of k equal time segments),
and how many frames our sampler decoded of all the clip holds (OpenCV decodes every frame up to the
last one it needs). The `ours Nt` column is `server.media.threaded.sample_video_threaded` with
`--threads N` (default 2): the GOPs that hold picks decoded at once, each with its own demuxer; it
must return exactly the frames of `sample_video` (the `same` column checks every pixel).

    python bench/video.py --quick                 # one 10 s 480p clip, default GOP and g=12
    python bench/video.py --clips 60s-720p-gop250,300s-480p-gop250 --threads 2
    python bench/video.py                         # the full matrix (encoding takes a while)
"""

from __future__ import annotations

import argparse
import itertools
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DURATIONS = {"10s": 10, "60s": 60, "300s": 300}
RESOLUTIONS = {"480p": (854, 480), "720p": (1280, 720), "1080p": (1920, 1080)}
GOPS = {"gop250": None, "gop12": 12}  # None: x264's default keyint (250)
FPS = 30
QUICK = ["10s-480p-gop250", "10s-480p-gop12"]


def all_clips() -> list[str]:
    """Every clip name of the matrix: '{duration}-{resolution}-{gop}'."""
    return [f"{d}-{r}-{g}" for d, r, g in itertools.product(DURATIONS, RESOLUTIONS, GOPS)]


def _frame(k: int, width: int, height: int, base: np.ndarray) -> np.ndarray:
    """A moving textured picture: a scrolling pattern, a moving box and a frame counter bar."""
    shift_x = (k * 3) % width
    shift_y = (k * 2) % height
    img = np.roll(base, (shift_y, shift_x), axis=(0, 1)).copy()
    box = max(8, height // 6)
    x0 = (k * 7) % max(1, width - box)
    y0 = (k * 5) % max(1, height - box)
    img[y0 : y0 + box, x0 : x0 + box] = (255 - (k * 3) % 256, (k * 5) % 256, 128)
    img[: height // 20, : (k % width)] = 255
    return img


def encode_clip(
    path: Path, seconds: int, width: int, height: int, gop: int | None, preset: str, seed: int = 0
) -> None:
    """Encode a synthetic H.264 MP4 clip (yuv420p, FPS frames/s) to `path` (via a temp file).

    `seed` picks the texture noise (different seeds: different pixels, same size and structure).
    """
    import av

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack(
        [
            127 + 100 * np.sin(xx / 23.0) * np.cos(yy / 31.0),
            127 + 100 * np.sin((xx + yy) / 41.0),
            127 + 100 * np.cos(xx / 17.0 - yy / 29.0),
        ],
        axis=-1,
    )
    base = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    tmp = path.with_suffix(".part.mp4")
    with av.open(str(tmp), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        options = {"preset": preset}
        if gop is not None:
            options["g"] = str(gop)
        stream.options = options
        for k in range(seconds * FPS):
            frame = av.VideoFrame.from_ndarray(_frame(k, width, height, base), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    tmp.replace(path)


def ensure_clip(name: str, cache: Path, preset: str) -> Path:
    """The cached clip `name`, encoded first if missing."""
    duration, resolution, gop = name.split("-")
    path = cache / f"{name}-{preset}.mp4"
    if not path.exists():
        width, height = RESOLUTIONS[resolution]
        print(f"encoding {path.name} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        encode_clip(path, DURATIONS[duration], width, height, GOPS[gop], preset)
        print(f"  {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    return path


class PeakRSS:
    """Context manager: peak resident-set growth (bytes) while inside, sampled every 2 ms."""

    def __init__(self) -> None:
        import psutil

        self._proc = psutil.Process()
        self.peak = 0

    def __enter__(self) -> PeakRSS:
        self._start = self._proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss - self._start)
            time.sleep(0.002)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss - self._start)


def run_ours(data: bytes, num_frames: int):
    from server.media import MediaLimits, sample_video

    limits = MediaLimits(max_media_bytes=len(data) + 1)
    video = sample_video(data, num_frames=num_frames, limits=limits)
    run_ours.last = video  # for the decoded-frames column
    return video.frames, video.frame_indices


def run_threaded(data: bytes, num_frames: int, threads: int = 2):
    from server.media import MediaLimits
    from server.media.threaded import sample_video_threaded

    limits = MediaLimits(max_media_bytes=len(data) + 1)
    video = sample_video_threaded(data, num_frames=num_frames, limits=limits, threads=threads)
    return video.frames, video.frame_indices


def run_opencv(data: bytes, num_frames: int):
    from vllm.multimodal.video import VIDEO_LOADER_REGISTRY

    loader = VIDEO_LOADER_REGISTRY.load("opencv")
    frames, meta = loader.load_bytes(data, num_frames=num_frames)
    return frames, list(meta["frames_indices"])


def measure(fn, data: bytes, num_frames: int):
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        frames, indices = fn(data, num_frames)
        seconds = time.perf_counter() - t0
    return seconds, mem.peak, frames, indices


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="one 10 s 480p clip, both GOPs, 1 round")
    parser.add_argument("--clips", help="comma-separated clip names (see --list)")
    parser.add_argument("--list", action="store_true", help="print the clip names and exit")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per loader (best is reported)")
    parser.add_argument("--num-frames", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2, help="threads of the threaded sampler (default 2)")
    parser.add_argument("--preset", default="medium", help="x264 preset for encoding (x264 default: medium)")
    parser.add_argument("--cache-dir", type=Path, default=ROOT / ".cache" / "bench-media")
    args = parser.parse_args(argv)

    if args.list:
        print("\n".join(all_clips()))
        return 0
    if args.clips:
        names = [n.strip() for n in args.clips.split(",") if n.strip()]
        unknown = sorted(set(names) - set(all_clips()))
        if unknown:
            parser.error(f"unknown clips {unknown}; see --list")
    else:
        names = QUICK if args.quick else all_clips()
    rounds = 1 if args.quick else max(1, args.rounds)
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: ensure_clip(name, args.cache_dir, args.preset) for name in names}

    # Warm up both (imports, codec tables) so round 1 does not time module loading.
    warm = paths[names[0]].read_bytes()
    run_ours(warm, 2)
    run_threaded(warm, 2, args.threads)
    run_opencv(warm, 2)

    threaded_col = f"ours {args.threads}t s"
    header = (
        f"{'clip':<20} {'MiB':>6} {'ours s':>8} {threaded_col:>10} {'opencv s':>9} {'opencv/ours':>11} "
        f"{'opencv/' + str(args.threads) + 't':>10} {'same':>5} "
        f"{'ours MiB':>9} {'opencv MiB':>10} {'same idx':>8} {'mean |d idx|':>12} "
        f"{'ours decoded':>13}"
    )
    print(
        f"video sampling, {args.num_frames} frames, best of {rounds} rounds, memory = peak RSS growth, "
        f"threaded sampler on {args.threads} threads; load {open('/proc/loadavg').read().split()[0]}"
    )
    print(header)
    print("-" * len(header))
    ratios = {}
    threaded_ratios = {}

    def threaded(data: bytes, num_frames: int):
        return run_threaded(data, num_frames, args.threads)

    loaders = (("ours", run_ours), ("threaded", threaded), ("opencv", run_opencv))
    for name in names:
        data = paths[name].read_bytes()
        best = {label: (float("inf"), 0) for label, _ in loaders}
        result = {}
        for _ in range(rounds):
            for label, fn in loaders:
                seconds, peak, frames, indices = measure(fn, data, args.num_frames)
                if seconds < best[label][0]:
                    best[label] = (seconds, peak)
                result[label] = (frames, indices)
        ours_idx, cv_idx = result["ours"][1], result["opencv"][1]
        same = ours_idx == cv_idx
        if len(ours_idx) == len(cv_idx):
            diff = float(np.mean(np.abs(np.asarray(ours_idx) - np.asarray(cv_idx))))
            diff_text = f"{diff:.1f}"
        else:
            diff_text = f"n {len(ours_idx)}/{len(cv_idx)}"
        ratio = best["opencv"][0] / best["ours"][0]
        ratios[name] = ratio
        threaded_ratios[name] = best["opencv"][0] / best["threaded"][0]
        same_frames = np.array_equal(np.asarray(result["ours"][0]), np.asarray(result["threaded"][0]))
        print(
            f"{name:<20} {len(data) / 2**20:>6.1f} {best['ours'][0]:>8.3f} {best['threaded'][0]:>10.3f} "
            f"{best['opencv'][0]:>9.3f} {ratio:>10.2f}x {threaded_ratios[name]:>9.2f}x "
            f"{'yes' if same_frames else 'NO':>5} "
            f"{best['ours'][1] / 2**20:>9.1f} {best['opencv'][1] / 2**20:>10.1f} "
            f"{'yes' if same else 'no':>8} {diff_text:>12} "
            f"{run_ours.last.decoded_frames:>6}/{run_ours.last.num_source_frames:<6}",
            flush=True,
        )
    print(
        "ratio opencv/ours: "
        + ", ".join(f"{k}={v:.2f}x" for k, v in ratios.items())
        + f"; threaded ({args.threads} threads): "
        + ", ".join(f"{k}={v:.2f}x" for k, v in threaded_ratios.items())
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
