"""Engine-neutral types between the HTTP layer and :mod:`server.engine` (which alone imports vLLM).

The routes speak only these types, so the HTTP layer's unit tests run against an in-process fake that
implements :class:`InferenceEngine`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from PIL import Image


@dataclass(frozen=True)
class SamplingOptions:
    """What one request asks of the sampler (OpenAI names).

    Attributes:
        max_tokens: completion tokens per choice (>= 1).
        n: choices to generate.
        temperature: 0 = greedy.
        top_p: nucleus mass in (0, 1].
        seed: per-request seed; choice ``i`` uses ``seed + i``.
        stop: stop strings (not included in the output).
        presence_penalty, frequency_penalty: in [-2, 2].
        logprobs: None for no logprobs, else how many top alternatives to return per token (0-20).
    """

    max_tokens: int
    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logprobs: int | None = None


@dataclass(frozen=True)
class TokenLogprobInfo:
    """Logprob of one generated token and its ``top`` alternatives, best first."""

    token: str
    logprob: float
    top: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class CompletionDelta:
    """New output of one choice since the previous step.

    Attributes:
        index: choice index in [0, n).
        text: newly decoded text (may be empty).
        num_tokens: tokens generated in this step.
        logprobs: one entry per new token when logprobs were requested, else None.
        finish_reason: ``"stop"`` or ``"length"`` on the choice's last delta, else None.
    """

    index: int
    text: str
    num_tokens: int
    logprobs: tuple[TokenLogprobInfo, ...] | None = None
    finish_reason: str | None = None


@dataclass(frozen=True)
class EngineStep:
    """One batch of outputs of a request.

    Attributes:
        prompt_tokens: the engine's prompt length after the multimodal expansion (each image
            placeholder counted as its visual tokens).
        deltas: new outputs, zero or more choices.
        finished: True on the request's last step (all choices finished).
    """

    prompt_tokens: int
    deltas: list[CompletionDelta] = field(default_factory=list)
    finished: bool = False


class EngineRequestError(ValueError):
    """The engine refused the request's input (maps to HTTP 400)."""


class EngineFailure(RuntimeError):
    """The engine failed while serving a request (maps to HTTP 500); other requests are unaffected
    unless :attr:`InferenceEngine.is_dead`."""


@runtime_checkable
class InferenceEngine(Protocol):
    """What the HTTP layer needs from an engine. Implemented by :class:`server.engine.VLLMEngine`."""

    model_path: Path
    served_model_name: str
    max_model_len: int

    def generate(
        self,
        request_id: str,
        prompt_token_ids: Sequence[int],
        images: Sequence[Image.Image],
        options: SamplingOptions,
    ) -> AsyncIterator[EngineStep]:
        """Stream the outputs of one request.

        Args:
            request_id: unique id, used by :meth:`abort`.
            prompt_token_ids: the prompt with ONE image-token id per image.
            images: 8-bit RGB images, one per image-token id, in prompt order.
            options: sampling options.

        Raises:
            EngineRequestError: the engine refused the input.
            EngineFailure: the engine failed.
        """
        ...

    async def abort(self, request_id: str) -> None:
        """Abort a request (no-op if it already finished)."""
        ...

    @property
    def is_dead(self) -> bool:
        """True once the engine cannot serve anymore."""
        ...

    def shutdown(self) -> None:
        """Stop the engine and free its processes."""
        ...
