"""The benchmark scripts run end to end in their --quick mode (no timing is asserted)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(args: list[str]) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def test_video_bench_quick_runs(tmp_path):
    proc = run(["bench/video.py", "--quick", "--preset", "ultrafast", "--cache-dir", str(tmp_path)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ours s" in proc.stdout and "opencv s" in proc.stdout
    assert "10s-480p-gop250" in proc.stdout and "10s-480p-gop12" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1].startswith("ratio opencv/ours:")


def test_preprocess_bench_quick_runs():
    proc = run(["bench/preprocess.py", "--quick"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ours img/s" in proc.stdout and "hf img/s" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1].startswith("ratio ours/transformers:")
