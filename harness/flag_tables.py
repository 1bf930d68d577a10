"""Rewrite the flag tables of README.md and docs/api.md from the settings model.

``python -m harness.flag_tables`` after adding or changing a field of
:class:`server.settings.ServerSettings`; ``tests/unit/test_schemas_settings.py`` fails until the
tables match ``python -m server.cli --help-markdown``.
"""

from __future__ import annotations

import re
from pathlib import Path

from server.cli import settings_markdown

REPO = Path(__file__).resolve().parents[1]
DOCS = (REPO / "README.md", REPO / "docs" / "api.md")
_TABLE = re.compile(r"^\| Flag \| Environment variable \| Default \| Meaning \|\n(?:\|.*\n)*", re.MULTILINE)


def main() -> None:
    table = settings_markdown()
    for path in DOCS:
        text = path.read_text()
        new, count = _TABLE.subn(lambda _: table, text, count=1)
        if count != 1:
            raise SystemExit(f"{path}: no flag table found")
        if new != text:
            path.write_text(new)
            print(f"updated {path.relative_to(REPO)}")


if __name__ == "__main__":
    main()
