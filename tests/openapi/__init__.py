"""OpenAI's published OpenAPI schemas (vendored) and a validator for response bodies.

``openai_schemas.json`` holds the schemas of ``openapi.json`` of https://github.com/openai/openai-openapi
that the tests need (the commit is in the file; re-vendor with ``tests/openapi/vendor.py``). The
document is OpenAPI 3.1 (JSON Schema 2020-12) but a few schemas still use 3.0's ``nullable: true``;
:func:`_jsonschema` rewrites that keyword to JSON Schema (``type: [T, "null"]``) and nothing else.
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

import jsonschema

DOC = json.loads(Path(__file__).with_name("openai_schemas.json").read_text())
COMMIT: str = DOC["commit"]
SCHEMAS: dict[str, Any] = DOC["components"]["schemas"]


def _nullable(node: Any) -> Any:
    if isinstance(node, dict):
        node = {k: _nullable(v) for k, v in node.items()}
        if node.pop("nullable", False):
            t = node.get("type")
            if isinstance(t, str):
                node["type"] = [t, "null"]
            elif isinstance(t, list) and "null" not in t:
                node["type"] = [*t, "null"]
            elif "type" not in node:
                return {"anyOf": [node, {"type": "null"}]}
            if "enum" in node and None not in node["enum"]:
                node["enum"] = [*node["enum"], None]
        return node
    if isinstance(node, list):
        return [_nullable(v) for v in node]
    return node


@functools.cache
def _validator(name: str) -> jsonschema.Draft202012Validator:
    root = {"$ref": f"#/components/schemas/{name}", "components": _nullable(copy.deepcopy(DOC["components"]))}
    return jsonschema.Draft202012Validator(root)


def validate(name: str, instance: Any) -> None:
    """Validate ``instance`` against OpenAI's schema ``name`` (``CreateChatCompletionResponse``,
    ``CreateChatCompletionStreamResponse``, ``CreateCompletionResponse``, ``ListModelsResponse``,
    ``Model``, ``ErrorResponse``).

    Raises:
        jsonschema.ValidationError: the first violation, with its path.
    """
    errors = sorted(_validator(name).iter_errors(instance), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        raise jsonschema.ValidationError(
            f"{name} at {'/'.join(map(str, err.absolute_path)) or '<root>'}: {err.message}\n"
            f"instance: {json.dumps(instance)[:2000]}"
        )


def validate_sse(body: str, *, completions: bool = False) -> list[dict[str, Any]]:
    """Validate every ``data:`` event of an SSE body (chunks, or error events) and the final
    ``[DONE]``; returns the decoded chunks (error events included)."""
    events = [line[len("data: ") :] for line in body.split("\n") if line.startswith("data: ")]
    assert events and events[-1] == "[DONE]", f"stream does not end with [DONE]: {body[-300:]}"
    out = []
    for raw in events[:-1]:
        obj = json.loads(raw)
        if "error" in obj:
            validate("ErrorResponse", obj)
        elif completions:
            validate("CreateCompletionResponse", _as_final_completion(obj))
        else:
            validate("CreateChatCompletionStreamResponse", obj)
        out.append(obj)
    return out


def _as_final_completion(chunk: dict[str, Any]) -> dict[str, Any]:
    """A streamed ``text_completion`` chunk as the schema's object. OpenAI's spec says that streamed
    and non-streamed completions share one shape (``CreateCompletionResponse``), but a chunk before a
    choice's last has ``finish_reason: null`` and, with ``include_usage``, ``usage: null``, as
    OpenAI's own API streams them; those two nulls (only) are accepted here, everything else is
    validated unchanged."""
    obj = copy.deepcopy(chunk)
    for choice in obj.get("choices", []):
        if choice.get("finish_reason", "missing") is None:
            choice["finish_reason"] = "stop"
    if "usage" in obj and obj["usage"] is None:
        del obj["usage"]
    return obj
