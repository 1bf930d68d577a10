"""Re-vendor the OpenAI OpenAPI schemas the conformance tests validate against.

Usage: ``python tests/openapi/vendor.py <path of openai-openapi's openapi.json> <commit>``
(``openapi.json`` of https://github.com/openai/openai-openapi). Writes ``openai_schemas.json`` next to
this file: the named root schemas and every schema they reference, unchanged, plus the source commit.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOTS = [
    "CreateChatCompletionRequest",
    "CreateChatCompletionResponse",
    "CreateChatCompletionStreamResponse",
    "CreateCompletionRequest",
    "CreateCompletionResponse",
    "ListModelsResponse",
    "Model",
    "ErrorResponse",
]
PREFIX = "#/components/schemas/"


def _refs(node: object, out: set[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(PREFIX):
            out.add(ref[len(PREFIX) :])
        for v in node.values():
            _refs(v, out)
    elif isinstance(node, list):
        for v in node:
            _refs(v, out)


def main(src: str, commit: str) -> None:
    spec = json.loads(Path(src).read_text())
    schemas = spec["components"]["schemas"]
    keep: dict[str, object] = {}
    todo = list(ROOTS)
    while todo:
        name = todo.pop()
        if name in keep:
            continue
        keep[name] = schemas[name]
        found: set[str] = set()
        _refs(schemas[name], found)
        todo.extend(sorted(found - keep.keys()))
    out = {
        "source": f"https://github.com/openai/openai-openapi/blob/{commit}/openapi.json",
        "commit": commit,
        "openapi": spec["openapi"],
        "roots": ROOTS,
        "components": {"schemas": dict(sorted(keep.items()))},
    }
    Path(__file__).with_name("openai_schemas.json").write_text(
        json.dumps(out, indent=1, sort_keys=False) + "\n"
    )
    print(f"{len(keep)} schemas from {commit}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
