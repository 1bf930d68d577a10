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
