"""Fixtures of the model-adapter tests: the tiny checkpoint, one shared vLLM engine, the HF reference.

The engine (vLLM's offline ``LLM`` on CPU, float32, eager) starts once for this directory and is shut
down when its last test has run, so it is not alive at the same time as the e2e server's engine.
"""

from __future__ import annotations

import gc
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MAX_MODEL_LEN = 8192


@pytest.fixture(scope="session")
def tiny_checkpoint() -> Path:
    """The built-in tiny random-weight checkpoint (built once into the repo's .cache)."""
    from model_adapter.checkpoint import ensure_tiny_checkpoint

    return ensure_tiny_checkpoint(REPO / ".cache" / "checkpoints")


def make_llm(model: Path | str, **overrides):
    """A vLLM offline engine on our adapter with the test settings (float32, eager, small KV cache)."""
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    from vllm import LLM

    import model_adapter

    kwargs = dict(
        model=str(model),
        hf_overrides=model_adapter.hf_overrides(),
        dtype="float32",
        max_model_len=MAX_MODEL_LEN,
        gpu_memory_utilization=0.05,
        limit_mm_per_prompt={"image": 6, "video": 1},
        enforce_eager=True,
        seed=0,
    )
    kwargs.update(overrides)
    return LLM(**kwargs)


def close_llm(llm) -> None:
    """Shut an offline engine down and free its processes."""
    try:
        llm.llm_engine.engine_core.shutdown()
    except Exception:  # noqa: BLE001 - already gone
        pass
    del llm
    gc.collect()


@pytest.fixture(scope="package")
def llm(tiny_checkpoint):
    """One vLLM engine with the adapter, shared by the adapter tests."""
    engine = make_llm(tiny_checkpoint)
    yield engine
    close_llm(engine)


@pytest.fixture(scope="package")
def hf_reference(tiny_checkpoint):
    """transformers' ``LlavaForConditionalGeneration`` and ``LlavaProcessor`` on the same checkpoint."""
    import torch
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    processor = AutoProcessor.from_pretrained(tiny_checkpoint)
    model = LlavaForConditionalGeneration.from_pretrained(tiny_checkpoint, dtype=torch.float32).eval()
    return model, processor
