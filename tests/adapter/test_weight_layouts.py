"""Every checkpoint key layout seen in the wild loads to identical outputs; gaps fail clearly.

The shared engine reloads each variant in place (``reload_weights`` on the worker, which runs the
adapter's ``load_weights`` exactly as a fresh engine would), then the original weights again; the
prefix cache is reset after each reload so no KV computed with other weights is reused.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from harness.media import gradient_image
from model_adapter.weights import LAYOUTS, to_layout

PROMPT = "<|im_start|>user\n<image>\nWhat is this?<|im_end|>\n<|im_start|>assistant\n"
IMAGE = gradient_image(120, 80, 11)


def _write_variant(src: Path, dst: Path, rename, drop: str | None = None, edit=None) -> Path:
    """``src`` with its weights renamed (``rename``), one dropped (``drop``) or changed (``edit``)."""
    dst.mkdir(parents=True)
    for f in src.iterdir():
        if f.name != "model.safetensors":
            (dst / f.name).symlink_to(f)
    tensors = load_file(str(src / "model.safetensors"))
    if edit is not None:
        edit(tensors)
    out = {rename(k): v for k, v in tensors.items() if k != drop}
    save_file(out, str(dst / "model.safetensors"), metadata={"format": "pt"})
    return dst


def _greedy(engine):
    from vllm import SamplingParams

    params = SamplingParams(max_tokens=8, temperature=0.0, logprobs=3, ignore_eos=True)
    (out,) = engine.generate(
        [{"prompt": PROMPT, "multi_modal_data": {"image": [IMAGE]}}], params, use_tqdm=False
    )
    completion = out.outputs[0]
    return list(completion.token_ids), [
        {k: round(v.logprob, 5) for k, v in step.items()} for step in completion.logprobs
    ]


@pytest.fixture
def reload(llm, tiny_checkpoint):
    """Load a checkpoint directory into the shared engine; restores the original afterwards."""

    def _reload(path: Path) -> None:
        try:
            llm.collective_rpc("reload_weights", kwargs={"weights_path": str(path)})
        finally:
            # reload_weights clears the worker's encoder cache but not the scheduler's record of
            # it: reset both, and the KV prefix cache, so nothing computed before is reused.
            llm.llm_engine.reset_encoder_cache()
            llm.reset_mm_cache()
            llm.reset_prefix_cache()

    yield _reload
    _reload(tiny_checkpoint)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_layout_loads_to_identical_outputs(layout, tmp_path, tiny_checkpoint, llm, reload):
    expected = _greedy(llm)
    variant = _write_variant(tiny_checkpoint, tmp_path / layout, lambda k: to_layout(k, layout))
    keys = load_file(str(variant / "model.safetensors")).keys()
    prefixes = {
        "published": "vision_tower.vision_model.embeddings.",
        "hf452": "model.vision_tower.vision_model.embeddings.",
        "hf5": "model.vision_tower.embeddings.",
    }
    assert any(k.startswith(prefixes[layout]) for k in keys)
    reload(variant)
    assert _greedy(llm) == expected


def test_reload_really_changes_weights(tmp_path, tiny_checkpoint, llm, reload):
    """Guards the test above: a checkpoint with other weights gives other outputs."""
    expected = _greedy(llm)

    def scale_lm_head(tensors):
        tensors["language_model.lm_head.weight"] = tensors["language_model.lm_head.weight"] * 1.5

    variant = _write_variant(tiny_checkpoint, tmp_path / "scaled", lambda k: k, edit=scale_lm_head)
    reload(variant)
    assert _greedy(llm) != expected


def test_missing_tensor_fails_naming_it(tmp_path, tiny_checkpoint, reload):
    missing = "language_model.model.layers.1.mlp.down_proj.weight"
    variant = _write_variant(tiny_checkpoint, tmp_path / "gap", lambda k: k, drop=missing)
    with pytest.raises(Exception, match=f"checkpoint is missing tensor '{missing}'"):
        reload(variant)


def test_unexpected_tensor_fails_naming_it(tmp_path, tiny_checkpoint, reload):
    variant = _write_variant(
        tiny_checkpoint,
        tmp_path / "extra",
        lambda k: k.replace("multi_modal_projector.linear_2.", "multi_modal_projector.linear_3."),
    )
    with pytest.raises(Exception, match="linear_3"):
        reload(variant)
