"""Request fields -> :class:`~server.generation.SamplingOptions` (OpenAI's and vLLM's sampling fields).

Structured outputs, in order of precedence:

1. ``tool_choice: "required"`` or a named function: vLLM's tool-call JSON schema (:mod:`server.tools`),
   as a compact-JSON grammar (:func:`compact_json_grammar`);
2. ``response_format``: ``json_schema`` -> its ``schema`` (any JSON object when it gives none),
   ``json_object`` -> any JSON object, ``text`` -> no constraint;
3. vLLM's ``structured_outputs``: ``json`` / ``regex`` / ``choice`` / ``grammar`` / ``json_object``;
   ``disable_any_whitespace`` (JSON as a compact grammar) and ``disable_additional_properties``
   (:func:`closed_objects`) are applied here because vLLM 0.32 honours them only server-wide;
   ``whitespace_pattern`` is a 400 ``unsupported_parameter`` for the same reason.

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
            grammar = compact_json_grammar(schema)  # type: ignore[arg-type]
        except ValueError as exc:
            raise invalid_request(
                f"The tools cannot be turned into a constraint: {exc}", param="tools"
            ) from None
        # Compact JSON (no free whitespace between tokens): the calls are parsed by the server, not
        # read by people, and a model cannot wander off into whitespace before closing the call.
        return StructuredOutput("grammar", grammar, param="tool_choice")
    rf = getattr(request, "response_format", None)
    if rf is not None and rf.type == "json_schema":
        schema = rf.json_schema.schema_
        if schema is None:
            return StructuredOutput("json_object", True, param="response_format")
        # a schema that the grammar compiler rejects is a 400 naming the schema (docs/api.md)
        return StructuredOutput("json", schema, param="response_format.json_schema.schema")
    if rf is not None and rf.type == "json_object":
        return StructuredOutput("json_object", True, param="response_format")
    so: StructuredOutputs | None = getattr(request, "structured_outputs", None)
    if so is None:
        return None
    json_schema = so.json_
    if isinstance(json_schema, dict) and so.disable_additional_properties:
        json_schema = closed_objects(json_schema)
    if so.disable_any_whitespace and (json_schema is not None or so.json_object):
        return StructuredOutput(
            "grammar", compact_json_grammar(json_schema or {"type": "object"}), param="structured_outputs"
        )
    for kind, value in (
        ("json", json_schema),
        ("regex", so.regex),
        ("choice", tuple(so.choice) if so.choice is not None else None),
        ("grammar", so.grammar),
        ("json_object", so.json_object),
    ):
        if value is not None:
            return StructuredOutput(kind, value, param="structured_outputs")
    return None


def compact_json_grammar(schema: dict[str, Any] | str) -> str:
    """The EBNF grammar (xgrammar's, vLLM's default structured-output backend) of ``schema`` as
    compact JSON: no whitespace between tokens, separators ``,`` and ``:``.

    vLLM 0.32 reads ``disable_any_whitespace`` only from the server-wide structured-outputs config,
    not per request, so a per-request compact constraint is sent to vLLM as this grammar.

    Raises:
        ValueError: xgrammar cannot convert the schema.
    """
    import json

    import xgrammar

    try:
        text = schema if isinstance(schema, str) else json.dumps(schema)  # a str is the schema as JSON text
        grammar = xgrammar.Grammar.from_json_schema(text, any_whitespace=False, separators=(",", ":"))
    except Exception as exc:  # noqa: BLE001 - xgrammar raises RuntimeError / ValueError subclasses: all a 400
        raise ValueError(f"the JSON schema cannot be turned into a grammar: {exc}") from None
    return str(grammar)


def closed_objects(schema: Any) -> Any:
    """``schema`` with ``additionalProperties: false`` on every object schema that declares
    ``properties`` and says nothing about additional ones (vLLM's ``disable_additional_properties``,
    which vLLM 0.32 reads only server-wide)."""
    if isinstance(schema, list):
        return [closed_objects(v) for v in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: closed_objects(v) for k, v in schema.items()}
    if "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


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
