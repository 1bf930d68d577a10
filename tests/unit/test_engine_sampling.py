"""``VLLMEngine._sampling_params``: every SamplingOptions field becomes vLLM's ``SamplingParams``
(imports vLLM, starts no engine), and the priority flag reaches vLLM's engine args."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.engine import VLLMEngine, build_engine_args
from server.generation import SamplingOptions, StructuredOutput
from server.settings import ServerSettings


def _params(**kw):
    return VLLMEngine(
        llm=None, model_path=Path("/x"), served_model_name="m", max_model_len=100
    )._sampling_params(SamplingOptions(max_tokens=8, **kw))


def test_vllm_extras_map_one_to_one():
    p = _params(
        top_k=5,
        min_p=0.2,
        repetition_penalty=1.3,
        min_tokens=2,
        ignore_eos=True,
        stop_token_ids=(7, 9),
        include_stop_str_in_output=True,
        skip_special_tokens=False,
        spaces_between_special_tokens=False,
        logit_bias=((11, 3.0),),
        allowed_token_ids=(1, 2, 11),
        bad_words=("foo",),
        prompt_logprobs=2,
        logprobs=3,
    )
    assert (p.top_k, p.min_p, p.repetition_penalty, p.min_tokens, p.ignore_eos) == (5, 0.2, 1.3, 2, True)
    assert p.stop_token_ids == [7, 9] and p.include_stop_str_in_output
    assert not p.skip_special_tokens and not p.spaces_between_special_tokens
    assert p.logit_bias == {11: 3.0} and p.allowed_token_ids == [1, 2, 11] and p.bad_words == ["foo"]
    assert p.prompt_logprobs == 2 and p.logprobs == 3


@pytest.mark.parametrize(
    "so,attr,expected",
    [
        (StructuredOutput("json", {"type": "object"}), "json", {"type": "object"}),
        (StructuredOutput("json_object", True), "json_object", True),
        (StructuredOutput("regex", "a+"), "regex", "a+"),
        (StructuredOutput("choice", ("x", "y")), "choice", ["x", "y"]),
        (StructuredOutput("grammar", 'root ::= "a"'), "grammar", 'root ::= "a"'),
    ],
)
def test_structured_outputs_go_to_vllm_params(so, attr, expected):
    p = _params(structured=so)
    assert getattr(p.structured_outputs, attr) == expected


def test_invalid_grammar_is_refused_by_vllms_frontend_validation():
    """What vLLM's input processor runs (in the server process, before the engine core) for the
    xgrammar backend: a broken grammar raises VLLMValidationError there, which the server turns into a 400."""
    from vllm.exceptions import VLLMValidationError
    from vllm.v1.structured_output.backend_xgrammar import validate_xgrammar_grammar

    with pytest.raises(VLLMValidationError):
        validate_xgrammar_grammar(_params(structured=StructuredOutput("grammar", "root ::= (")))
    validate_xgrammar_grammar(_params(structured=StructuredOutput("grammar", 'root ::= "a"')))


def test_scheduling_policy_flag_reaches_engine_args():
    args = build_engine_args(ServerSettings(scheduling_policy="priority"), Path("/x"))
    assert args.scheduling_policy == "priority"
    assert build_engine_args(ServerSettings(), Path("/x")).scheduling_policy == "fcfs"


def test_disable_additional_properties_closes_every_declared_object():
    from server.sampling import closed_objects

    schema = {
        "type": "object",
        "properties": {"a": {"type": "object", "properties": {"b": {"type": "string"}}}},
        "$defs": {"x": {"type": "object", "properties": {}, "additionalProperties": True}},
    }
    closed = closed_objects(schema)
    assert closed["additionalProperties"] is False
    assert closed["properties"]["a"]["additionalProperties"] is False
    assert closed["$defs"]["x"]["additionalProperties"] is True  # an explicit choice stays
