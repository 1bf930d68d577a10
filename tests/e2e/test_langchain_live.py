"""LangChain's ``ChatOpenAI`` (langchain-openai) against the live server: structured output for its
default method (``json_schema``) and for ``function_calling``, ``bind_tools`` with a forced tool, and a
tool-result turn. The model has random weights: these pass only because the server constrains
decoding to the schema / the tool call."""

from __future__ import annotations

from typing import Literal

import langchain_openai
import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from pydantic import BaseModel


class Pet(BaseModel):
    """A pet."""

    kind: Literal["cat", "dog"]
    friendly: bool


class GetWeather(BaseModel):
    """Get the weather of a city."""

    unit: Literal["C", "F"]


def _llm(live_server, model_name, **kw):
    return langchain_openai.ChatOpenAI(
        base_url=live_server.v1, api_key="unused", model=model_name, max_tokens=80, temperature=1.0, **kw
    )


@pytest.mark.parametrize("method", [None, "function_calling", "json_schema"])
def test_with_structured_output(live_server, model_name, method):
    llm = _llm(live_server, model_name)
    structured = (
        llm.with_structured_output(Pet) if method is None else llm.with_structured_output(Pet, method=method)
    )
    for seed in (1, 2):
        pet = structured.bind(seed=seed).invoke("Describe a pet.")
        assert isinstance(pet, Pet)


def test_bind_tools_forced_tool_and_tool_result_turn(live_server, model_name):
    llm = _llm(live_server, model_name).bind_tools([GetWeather], tool_choice="GetWeather")
    reply = llm.invoke("Weather in Paris?")
    assert isinstance(reply, AIMessage)
    assert [c["name"] for c in reply.tool_calls] == ["GetWeather"]
    assert reply.tool_calls[0]["args"]["unit"] in ("C", "F")
    follow = (
        _llm(live_server, model_name)
        .bind_tools([GetWeather])
        .invoke(
            [
                HumanMessage("Weather in Paris?"),
                reply,
                ToolMessage("21 degrees", tool_call_id=reply.tool_calls[0]["id"]),
            ]
        )
    )
    assert isinstance(follow, AIMessage)
