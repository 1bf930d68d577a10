"""Engine-neutral types between the HTTP layer and :mod:`server.engine` (which alone imports vLLM).

The routes speak only these types, so the HTTP layer's unit tests run against an in-process fake that
implements :class:`InferenceEngine`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from PIL import Image


@dataclass(frozen=True)
class StructuredOutput:
    """One structured-output constraint for vLLM's ``StructuredOutputsParams``.

    Attributes:
        kind: ``json`` (a JSON schema), ``json_object`` (any JSON object), ``regex``, ``choice`` or
            ``grammar`` (EBNF / Lark, as vLLM takes it).
        value: the schema (dict), the regex / grammar text, the choices (tuple), or True.
        param: the request field it came from (``response_format``, ``structured_outputs``,
            ``tool_choice``), named by a 400 if vLLM refuses the constraint.
    """

    kind: str
    value: Any
    param: str = "structured_outputs"


@dataclass(frozen=True)
class SamplingOptions:
    """What one request asks of the sampler (OpenAI's names, then vLLM's names and ranges).

    Attributes:
        max_tokens: completion tokens per choice (>= 1).
        n: choices to generate.
        temperature: 0 = greedy.
        top_p: nucleus mass in (0, 1].
        seed: per-request seed; choice ``i`` uses ``seed + i``.
        stop: stop strings (not included in the output unless ``include_stop_str_in_output``).
        presence_penalty, frequency_penalty: in [-2, 2].
        logprobs: None for no logprobs, else how many top alternatives to return per token (0-20).
        top_k: vLLM ``top_k`` (0 or -1: off).
        min_p: vLLM ``min_p`` in [0, 1].
        repetition_penalty: vLLM ``repetition_penalty`` in (0, 2] (1: off).
        min_tokens: tokens generated before EOS / stop tokens may end a choice.
        ignore_eos: keep generating after EOS (until max_tokens or a stop).
        stop_token_ids: token ids that end a choice.
        include_stop_str_in_output: keep the matched stop string in the text.
        skip_special_tokens, spaces_between_special_tokens: detokenizer options.
        logit_bias: token id -> bias added to its logit (OpenAI's [-100, 100]).
        allowed_token_ids: only these tokens may be sampled (None: all).
        bad_words: words that may never be generated.
        prompt_logprobs: None, or top alternatives per prompt token (0-20).
        priority: vLLM priority (lower is served first; needs ``--scheduling-policy priority``).
        structured: a structured-output constraint, or None.
        cache_salt: vLLM prefix-cache salt, or None.
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
    top_k: int = 0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    min_tokens: int = 0
    ignore_eos: bool = False
    stop_token_ids: tuple[int, ...] = ()
    include_stop_str_in_output: bool = False
    skip_special_tokens: bool = True
    spaces_between_special_tokens: bool = True
    logit_bias: tuple[tuple[int, float], ...] = ()
    allowed_token_ids: tuple[int, ...] | None = None
    bad_words: tuple[str, ...] = ()
    prompt_logprobs: int | None = None
    priority: int = 0
    structured: StructuredOutput | None = None
    cache_salt: str | None = None


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
        token_ids: the new token ids (``num_tokens`` of them; empty if the engine does not say).
    """

    index: int
    text: str
    num_tokens: int
    logprobs: tuple[TokenLogprobInfo, ...] | None = None
    finish_reason: str | None = None
    token_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class EngineStep:
    """One batch of outputs of a request.

    Attributes:
        prompt_tokens: the engine's prompt length after the multimodal expansion (each image
            placeholder counted as its visual tokens).
        deltas: new outputs, zero or more choices.
        finished: True on the request's last step (all choices finished).
        prompt_logprobs: with ``prompt_logprobs``, on the first step: one entry per prompt token of
            the expanded prompt (``prompt_tokens`` entries); None for the first token and for every
            visual-token position (an image's 729 positions carry no text-token logprob), else
            ``(token_id, logprob, rank, decoded_token)`` of the prompt token first, then the top
            alternatives best first.
        prompt_token_ids: with ``prompt_logprobs``: the expanded prompt ids (``prompt_tokens`` ids).
        cached_tokens: prompt tokens served from the prefix cache, when the engine says.
    """

    prompt_tokens: int
    deltas: list[CompletionDelta] = field(default_factory=list)
    finished: bool = False
    prompt_logprobs: list[tuple[tuple[int, float, int, str], ...] | None] | None = None
    prompt_token_ids: list[int] | None = None
    cached_tokens: int | None = None


class EngineRequestError(ValueError):
    """The engine refused the request's input (maps to HTTP 400).

    Attributes:
        param: the request field at fault when known (``logit_bias``, ``response_format``, ...).
    """

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


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
        *,
        media_uuids: Sequence[str | None] | None = None,
    ) -> AsyncIterator[EngineStep]:
        """Stream the outputs of one request.

        Args:
            request_id: unique id, used by :meth:`abort`.
            prompt_token_ids: the prompt with ONE image-token id per image.
            images: 8-bit RGB images, one per image-token id, in prompt order.
            options: sampling options.
            media_uuids: None, or one key per image (None entries allowed): a key that names the
                image's pixels exactly (equal keys = equal pixels), vLLM's ``multi_modal_uuids``.

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
