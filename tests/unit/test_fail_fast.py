"""``interleave-serve`` refuses a bad ``--model`` or a port it cannot bind at once, with one clear line
and exit code 2, before anything loads the engine (no vLLM import, no checkpoint build)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest

from harness.servers import REPO, clean_environment


def _serve(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "server.cli", "--host", "127.0.0.1", *args],
        cwd=REPO,
        env=clean_environment(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _error_lines(proc: subprocess.CompletedProcess) -> list[str]:
    return [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]


def test_port_in_use(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        model = tmp_path / "ckpt"
        model.mkdir()
        (model / "config.json").write_text(json.dumps({"model_type": "llava"}))
        proc = _serve("--port", str(port), "--model", str(model))
    assert proc.returncode == 2
    lines = _error_lines(proc)
    assert len(lines) == 1, lines
    assert f"cannot listen on 127.0.0.1:{port}" in lines[0] and "in use" in lines[0]


@pytest.mark.parametrize(
    "setup, expected",
    [
        (lambda d: d / "missing", "no such file or folder"),
        (lambda d: d, "no config.json"),
        (
            lambda d: _config(d, {"model_type": "bert", "architectures": ["BertModel"]}),
            "not a LLaVA-Interleave checkpoint",
        ),
        (lambda d: _config(d, "{not json"), "config.json cannot be read"),
    ],
    ids=["missing", "no-config", "not-llava", "bad-json"],
)
def test_bad_model(tmp_path, setup, expected):
    proc = _serve("--port", "0", "--model", str(setup(tmp_path)))
    assert proc.returncode == 2
    lines = _error_lines(proc)
    assert len(lines) == 1, lines
    assert expected in lines[0] and "--model" in lines[0]


def _config(folder, data):
    (folder / "config.json").write_text(data if isinstance(data, str) else json.dumps(data))
    return folder
