"""Tool calling in OpenAI's shape on a Qwen-family (ChatML) model.

- **Prompt** (:func:`tools_system_text`, :func:`assistant_tool_calls_text`, :func:`tool_response_text`):
  Hermes-style, exactly as Qwen2.5's chat template writes it: the function signatures go into the
  system message inside ``<tools></tools>``, earlier calls are ``<tool_call>{"name", "arguments"}</tool_call>``
  lines of the assistant turn, and ``role: "tool"`` results are ``<tool_response>...</tool_response>``
  blocks of one user turn (consecutive tool messages share that turn).
- **tool_choice "required"** and **a named function** are guaranteed by constrained decoding (as vLLM's
  server does): :func:`tool_constraint` gives vLLM's own JSON schema (``vllm.tool_parsers.utils.
  get_json_schema_from_tools``): an array of ``{"name", "parameters"}`` objects for ``required`` (at
  most one with ``parallel_tool_calls: false``), the function's parameters for a named function.
  :func:`parse_constrained` turns that JSON into tool calls.
- **tool_choice "auto"**: the model's text is parsed with vLLM's Hermes tool parser
  (``Hermes2ProToolParser``), streaming or not (:class:`AutoToolStream`).

vLLM is imported lazily (only when a request uses tools).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from server.schemas import ChatCompletionRequest, ChatMessage, FunctionTool, NamedToolChoice, TextPart

_TOOLS_HEADER = (
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>"
)
_TOOLS_FOOTER = (
    "\n</tools>\n\nFor each function call, return a json object with function name and arguments within "
    '<tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n'
    "</tool_call>"
)


def _tool_json(tool: FunctionTool) -> str:
    fn: dict[str, Any] = {"name": tool.function.name}
    if tool.function.description is not None:
        fn["description"] = tool.function.description
    if tool.function.parameters is not None:
        fn["parameters"] = tool.function.parameters
    return json.dumps({"type": "function", "function": fn}, ensure_ascii=False)


def tools_system_text(tools: list[FunctionTool]) -> str:
    """The ``# Tools`` section appended (after a blank line) to the system message."""
    return _TOOLS_HEADER + "".join("\n" + _tool_json(t) for t in tools) + _TOOLS_FOOTER


def assistant_tool_calls_text(message: ChatMessage) -> str:
    """The ``<tool_call>`` lines of an assistant message with ``tool_calls`` (after its content)."""
    out = ""
    for call in message.tool_calls or ():
        out += f'\n<tool_call>\n{{"name": "{call.function.name}", "arguments": {call.function.arguments}}}\n</tool_call>'
    return out


def tool_response_text(message: ChatMessage) -> str:
    """One ``<tool_response>`` block of a ``role: "tool"`` message."""
    text = "".join(p.text for p in message.content if isinstance(p, TextPart))
    return f"\n<tool_response>\n{text}\n</tool_response>"


def renders_tools(request: ChatCompletionRequest) -> bool:
    """Tools go into the prompt unless ``tool_choice`` is ``none`` (then the model is not told of them)."""
    return bool(request.tools) and request.effective_tool_choice != "none"


def tool_constraint(request: ChatCompletionRequest) -> dict[str, Any] | None:
    """vLLM's JSON schema for ``required`` / a named function, None for ``auto`` / ``none``.

    Raises:
        ValueError: vLLM refused the tools (e.g. conflicting ``$defs``).
    """
    if not request.uses_tool_constraint:
        return None
    from vllm.entrypoints.openai.chat_completion.protocol import (
        ChatCompletionNamedToolChoiceParam,
        ChatCompletionToolsParam,
    )
    from vllm.tool_parsers.utils import get_json_schema_from_tools

    tools: list[Any] = [
        ChatCompletionToolsParam.model_validate(t.model_dump(exclude_none=True)) for t in request.tools or ()
    ]
    choice: Any = request.effective_tool_choice
    if isinstance(choice, NamedToolChoice):
        choice = ChatCompletionNamedToolChoiceParam.model_validate(choice.model_dump())
    schema = get_json_schema_from_tools(choice, tools, request.parallel_tool_calls)
    assert isinstance(schema, dict)
    return schema


def new_call_id() -> str:
    """A tool call id ``call_<24 hex>``."""
    return f"call_{uuid.uuid4().hex[:24]}"


@dataclass(frozen=True)
class ParsedCall:
    """One tool call: the function name and its arguments as JSON text."""

    id: str
    name: str
    arguments: str


def parse_constrained(request: ChatCompletionRequest, text: str) -> list[ParsedCall] | None:
    """Tool calls of a constrained output (``required``: ``[{"name", "parameters"}, ...]``; a named
    function: its arguments object); None if the text is not complete JSON (cut by ``max_tokens``)."""
    try:
        data = json.loads(text)
    except ValueError:
        return None
    choice = request.effective_tool_choice
    if isinstance(choice, NamedToolChoice):
        return [ParsedCall(new_call_id(), choice.function.name, json.dumps(data, ensure_ascii=False))]
    if not isinstance(data, list):
        return None
    return [
        ParsedCall(
            new_call_id(), str(item["name"]), json.dumps(item.get("parameters", {}), ensure_ascii=False)
        )
        for item in data
        if isinstance(item, dict) and "name" in item
    ]


def _hermes(tokenizer: Any) -> Any:
    from vllm.tool_parsers.hermes_tool_parser import Hermes2ProToolParser

    return Hermes2ProToolParser(tokenizer)


def parse_auto(tokenizer: Any, text: str) -> tuple[str | None, list[ParsedCall]]:
    """``(content, calls)`` of a ``tool_choice: "auto"`` output, by vLLM's Hermes tool parser:
    ``<tool_call>{"name", "arguments"}</tool_call>`` blocks become calls, the text before them content."""
    info = _hermes(tokenizer).extract_tool_calls(text, None)
    if not info.tools_called:
        return text, []
    calls = [ParsedCall(new_call_id(), c.function.name, c.function.arguments) for c in info.tool_calls]
    return info.content, calls


class AutoToolStream:
    """Streams one choice's ``auto`` output through vLLM's Hermes parser.

    :meth:`feed` takes each new text delta and returns ``(content, tool_call_deltas)`` to send, where
    each tool-call delta is a dict in OpenAI's chunk shape (``index``, and ``id`` / ``type`` /
    ``function.name`` on a call's first delta, ``function.arguments`` fragments after);
    :meth:`finish` returns what the parser held back.
    """

    def __init__(self, tokenizer: Any) -> None:
        self._parser = _hermes(tokenizer)
        self._text = ""
        self.called = False

    def feed(self, delta: str) -> tuple[str | None, list[dict[str, Any]]]:
        previous = self._text
        self._text += delta
        if not delta:
            return None, []
        msg = self._parser.extract_tool_calls_streaming(previous, self._text, delta, [], [], [], None)
        if msg is None:
            return None, []
        calls = []
        for tc in msg.tool_calls or ():
            d: dict[str, Any] = {"index": tc.index}
            if tc.id is not None:
                d["id"] = new_call_id()
                d["type"] = "function"
            fn = (
                tc.function
                if isinstance(tc.function, dict)
                else (tc.function.model_dump(exclude_none=True) if tc.function else {})
            )
            if fn:
                d["function"] = {k: v for k, v in fn.items() if v is not None}
            calls.append(d)
        if calls:
            self.called = True
        return msg.content or None, calls

    def finish(self) -> tuple[str | None, list[dict[str, Any]]]:
        """Content the parser held back (a partial ``<tool_call`` that never completed), or the rest
        of the last call's arguments."""
        if not self.called:
            sent = int(getattr(self._parser, "_sent_content_idx", len(self._text)))
            rest = self._text[sent:]
            return (rest or None), []
        rest_args = self._parser.get_remaining_unstreamed_args()
        if rest_args:
            index = len(self._parser.prev_tool_call_arr) - 1
            return None, [{"index": index, "function": {"arguments": rest_args}}]
        return None, []
