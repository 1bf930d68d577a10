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
    except Exception:  # noqa: BLE001 - torch missing or broken: no GPU tests
        return False


DIRECTORY_MARKERS: dict[str, tuple[str, ...]] = {
    "unit": ("unit",),
    "adapter": ("adapter",),
    "e2e": ("e2e",),
    "bench": ("e2e",),  # the benchmark scripts run end to end against real engines
    "reliability": ("reliability",),
    "deploy": ("deploy",),
    "ray": ("ray",),
}
"""The marker(s) every test gets from its directory under ``tests/`` (``make test PYTEST_ARGS="-m unit"``);
the only place markers are applied by location. Markers are registered in pyproject.toml."""

TESTS = Path(__file__).resolve().parent


def _directory_markers(item: pytest.Item) -> tuple[str, ...]:
    try:
        top = Path(str(item.path)).resolve().relative_to(TESTS).parts[0]
    except (ValueError, IndexError):  # outside tests/ (clients/python/tests has its own session)
        return ()
    return DIRECTORY_MARKERS.get(top, ())


def pytest_collection_modifyitems(config, items):
    """Mark each test by its directory (:data:`DIRECTORY_MARKERS`); tests marked ``gpu`` skip cleanly
    on machines without a CUDA device."""
    for item in items:
        for name in _directory_markers(item):
            item.add_marker(getattr(pytest.mark, name))
    gpu_items = [item for item in items if item.get_closest_marker("gpu")]
    if gpu_items and not _has_cuda():
        skip = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
        for item in gpu_items:
            item.add_marker(skip)
