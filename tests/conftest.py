"""Shared fixtures of the whole suite (light: nothing here imports vLLM)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHECKPOINT_CACHE = REPO / ".cache" / "checkpoints"
"""Where the tests build the tiny random-weight checkpoint (shared by adapter and e2e tests)."""

# Engines started by tests (the adapter's offline engine, the e2e server) need a bounded KV cache on
# these CPU machines.
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")


@pytest.fixture(scope="session")
def tiny_checkpoint_path() -> Path:
    """The built-in tiny checkpoint (random weights), built once into ``.cache/checkpoints``."""
    from model_adapter.checkpoint import ensure_tiny_checkpoint

    return Path(ensure_tiny_checkpoint(CHECKPOINT_CACHE))


def _has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:  # torch missing or broken: no GPU tests
        return False


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` skip cleanly on machines without a CUDA device."""
    gpu_items = [item for item in items if item.get_closest_marker("gpu")]
    if gpu_items and not _has_cuda():
        skip = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
        for item in gpu_items:
            item.add_marker(skip)
