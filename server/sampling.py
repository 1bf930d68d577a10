"""Request fields -> :class:`~server.generation.SamplingOptions` (OpenAI's and vLLM's sampling fields).

Structured outputs, in order of precedence:

1. ``tool_choice: "required"`` or a named function: vLLM's tool-call JSON schema (:mod:`server.tools`);
2. ``response_format``: ``json_schema`` -> its ``schema`` (any JSON object when it gives none),
   ``json_object`` -> any JSON object, ``text`` -> no constraint;
3. vLLM's ``structured_outputs``: ``json`` / ``regex`` / ``choice`` / ``grammar`` / ``json_object``.

(Combining 1 with 2 or 3, or 2 with 3, is a 400 before this runs.)
"""

from __future__ import annotations

from typing import Any

from server.errors import invalid_request
from server.generation import SamplingOptions, StructuredOutput
from server.schemas import ChatCompletionRequest, StructuredOutputs


def structured_output(request: Any) -> StructuredOutput | None:
    """The request's structured-output constraint (see the module docstring), or None.

    Raises:
        APIError: 400 naming ``tools`` when vLLM refuses to build the tool-call schema.
    """
    if isinstance(request, ChatCompletionRequest) and request.uses_tool_constraint:
        from server.tools import tool_constraint

        try:
            schema = tool_constraint(request)
        except ValueError as exc:
            raise invalid_request(f"The tools cannot be turned into a constraint: {exc}", param="tools") from None
        # Compact JSON (no free whitespace between tokens): the calls are parsed by the server, not
        # read by people, and a model cannot wander off into whitespace before closing the array.
        return StructuredOutput("json", schema, param="tool_choice", disable_any_whitespace=True)
    rf = getattr(request, "response_format", None)
    if rf is not None and rf.type == "json_schema":
        schema = rf.json_schema.schema_
        if schema is None:
            return StructuredOutput("json_object", True, param="response_format")
        return StructuredOutput("json", schema, param="response_format")
    if rf is not None and rf.type == "json_object":
        return StructuredOutput("json_object", True, param="response_format")
    so: StructuredOutputs | None = getattr(request, "structured_outputs", None)
    if so is None:
        return None
    for kind, value in (
        ("json", so.json_),
        ("regex", so.regex),
        ("choice", tuple(so.choice) if so.choice is not None else None),
        ("grammar", so.grammar),
        ("json_object", so.json_object),
    ):
        if value is not None:
            return StructuredOutput(
                kind,
                value,
                param="structured_outputs",
                disable_any_whitespace=so.disable_any_whitespace,
                disable_additional_properties=so.disable_additional_properties,
                whitespace_pattern=so.whitespace_pattern,
            )
    return None


def sampling_options(request: Any, *, max_tokens: int, logprobs: int | None) -> SamplingOptions:
    """Sampling options of a validated chat or completions request.

    Args:
        request: a :class:`~server.schemas.ChatCompletionRequest` or
            :class:`~server.completions.CompletionRequest` (the same field names).
        max_tokens: the resolved ``max_tokens`` (context already checked).
        logprobs: top alternatives per generated token, None for no logprobs.
    """
    return SamplingOptions(
        max_tokens=max_tokens,
        n=request.n,
        temperature=1.0 if request.temperature is None else request.temperature,
        top_p=1.0 if request.top_p is None else request.top_p,
        seed=request.seed,
        stop=tuple(request.stop or ()),
        presence_penalty=request.presence_penalty or 0.0,
        frequency_penalty=request.frequency_penalty or 0.0,
        logprobs=logprobs,
        top_k=0 if request.top_k is None else request.top_k,
        min_p=0.0 if request.min_p is None else request.min_p,
        repetition_penalty=1.0 if request.repetition_penalty is None else request.repetition_penalty,
        min_tokens=request.min_tokens,
        ignore_eos=request.ignore_eos,
        stop_token_ids=tuple(request.stop_token_ids or ()),
        include_stop_str_in_output=request.include_stop_str_in_output,
        skip_special_tokens=request.skip_special_tokens,
        spaces_between_special_tokens=request.spaces_between_special_tokens,
        logit_bias=tuple((int(k), float(v)) for k, v in (request.logit_bias or {}).items()),
        allowed_token_ids=tuple(request.allowed_token_ids) if request.allowed_token_ids is not None else None,
        bad_words=tuple(request.bad_words or ()),
        prompt_logprobs=request.prompt_logprobs,
        priority=request.priority,
        structured=structured_output(request),
        cache_salt=request.cache_salt,
    )
