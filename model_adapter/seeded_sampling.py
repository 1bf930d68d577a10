"""Seeded sampling with chunked prefill on vLLM's CPU build (a fix applied by :func:`model_adapter.register`).

vLLM samples a token for every scheduled request in every step, including a request whose prompt is
only partly prefilled in this step (a prefill chunk, or a prefill cut short before an image whose
encoder output does not fit the encoder budget). That token is discarded, and for a seeded request
(``SamplingParams.seed``) vLLM then rewinds the request's ``torch.Generator`` "as if the token was not
sampled" with ``gen.set_offset(gen.get_offset() - 4)`` (``GPUModelRunner._bookkeeping_sync``). Offsets
exist only for the CUDA (Philox) generator: on the CPU build the generator is a Mersenne Twister and
``get_offset`` raises ``RuntimeError: CPU Generator does not use offset``, which kills the engine core.
Any seeded request with ``temperature > 0`` and a prompt longer than one prefill chunk (2048 tokens on
the CPU build: three images, or a video of three frames) did that.

The fix keeps vLLM's meaning exactly: before the sampler runs, the generator state of each request
whose token will be discarded is saved (``Generator.get_state``), and restored right after sampling,
so the discarded draw leaves no trace; vLLM's offset rewind then finds no generator to rewind. The
tokens of a seeded request therefore do not depend on how its prompt was chunked or how much of it
came from the prefix cache, as on CUDA. Only ``CPUModelRunner`` is changed, once per process.
"""

from __future__ import annotations

import functools
from typing import Any

_APPLIED_FLAG = "_llava_interleave_seeded_sampling_fix"


def _discarded_generators(runner: Any) -> dict[int, Any]:
    """``{batch index: generator}`` of the seeded requests whose sampled token this step discards."""
    generators = runner.input_batch.generators
    if not generators:
        return {}
    num_reqs = runner.input_batch.num_reqs
    mask = runner.discard_request_mask.np[:num_reqs]
    return {int(i): generators[int(i)] for i in mask.nonzero()[0] if int(i) in generators}


def apply_cpu_fix() -> bool:
    """Patch vLLM's ``CPUModelRunner`` (idempotent). Returns True if the class is patched.

    Does nothing (returns False) where vLLM has no CPU model runner to patch; the CUDA runner is never
    touched.
    """
    try:
        from vllm.v1.worker.cpu_model_runner import CPUModelRunner
    except Exception:  # noqa: BLE001 - a build without the CPU runner: nothing to fix
        return False
    if getattr(CPUModelRunner, _APPLIED_FLAG, False):
        return True
    base_sample = CPUModelRunner._sample
    base_bookkeeping = CPUModelRunner._bookkeeping_sync

    @functools.wraps(base_sample)
    def _sample(self: Any, *args: Any, **kwargs: Any) -> Any:
        discarded = _discarded_generators(self)
        saved = {i: gen.get_state() for i, gen in discarded.items()}
        try:
            return base_sample(self, *args, **kwargs)
        finally:
            for i, gen in discarded.items():
                gen.set_state(saved[i])
            # Seen by _bookkeeping_sync of this step: these generators are already rewound.
            self._llava_interleave_rewound = set(discarded)

    @functools.wraps(base_bookkeeping)
    def _bookkeeping_sync(self: Any, *args: Any, **kwargs: Any) -> Any:
        rewound: set[int] = getattr(self, "_llava_interleave_rewound", set())
        self._llava_interleave_rewound = set()
        generators = self.input_batch.generators
        hidden = {i: generators.pop(i) for i in rewound if i in generators}
        try:
            return base_bookkeeping(self, *args, **kwargs)
        finally:
            generators.update(hidden)

    CPUModelRunner._sample = _sample  # type: ignore[method-assign]  # the patch itself
    CPUModelRunner._bookkeeping_sync = _bookkeeping_sync  # type: ignore[method-assign]
    setattr(CPUModelRunner, _APPLIED_FLAG, True)
    return True
