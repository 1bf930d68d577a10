"""bench/serve.py --quick runs end to end: the servers and the in-process engine column start one after
the other, serve the mixed workload (and the multi-turn chat workload) without errors, and the report
has every column's rows and the ratio lines (no timing asserted).

Starts vLLM engines in turn (about 0.5-1 min each on 2 CPU cores), hence in tests/bench (marked e2e).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run_bench(tmp_path: Path, out: Path, *args: str) -> subprocess.CompletedProcess:
    """``bench/serve.py --quick ARGS --json OUT`` to the end; its exit code must be 0."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    proc = subprocess.run(
        [
            sys.executable,
            "bench/serve.py",
            "--quick",
            *args,
            "--json",
            str(out),
            "--log-dir",
            str(tmp_path / "logs"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_serve_bench_quick(tmp_path):
    out = tmp_path / "serve.json"
    proc = _run_bench(tmp_path, out, "--servers", "ours,vllm,engine")
    lines = proc.stdout.splitlines()
    summary = lines[lines.index(next(line for line in lines if line.startswith("summary"))) :]
    assert any(line.startswith("ours ") for line in summary), proc.stdout
    assert any(line.startswith("vllm ") for line in summary), proc.stdout
    assert any(line.startswith("ratio ours/vllm:") for line in summary), proc.stdout
    assert any(line.startswith("ratio ours/engine:") for line in summary), proc.stdout
    result = json.loads(out.read_text())
    assert {r["server"] for r in result["rounds"]} == {"ours", "vllm", "engine"}
    assert all(r["errors"] == 0 and r["requests"] == 9 for r in result["rounds"])
    assert set(result["ratios"]) >= {"req_per_s", "out_tok_per_s", "ttft_p50", "e2e_p50"}


def test_serve_bench_chat_quick(tmp_path):
    out = tmp_path / "chat.json"
    proc = _run_bench(tmp_path, out, "--workload", "chat", "--servers", "ours,engine")
    assert any(line.startswith("ratio ours/engine per turn:") for line in proc.stdout.splitlines()), (
        proc.stdout
    )
    result = json.loads(out.read_text())
    assert all(r["errors"] == 0 and r["requests"] == 3 for r in result["rounds"])  # 1 conversation x 3 turns
    assert set(result["turns"]["table"]["ours"]) == {"turn1", "turn2", "turn3"}
    # turns 2 and 3 resend the clip and the photos: our media cache serves them
    cache = result["media_cache"]
    assert cache["misses"] == 3 and cache["hits"] == 6  # 1 video + 2 images, decoded once each
