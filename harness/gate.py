"""The quality gate: ruff (lint and format check) and mypy on ``server/`` and ``model_adapter/``,
configured in pyproject.toml; .ci/run runs it before the tests, ``.pre-commit-config.yaml`` the same
tools as git hooks.

    .venv/bin/python -m harness.gate          # exit 1 if any tool finds something

Prints each tool's findings and run time, then a summary line per tool.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

CHECKS: tuple[tuple[str, list[str]], ...] = (
    ("ruff check", [str(BIN / "ruff"), "check", "."]),
    ("ruff format", [str(BIN / "ruff"), "format", "--check", "."]),
    ("mypy", [str(BIN / "mypy")]),  # files = server, model_adapter (pyproject.toml [tool.mypy])
)


def main() -> int:
    """Run every check (all of them, also after a failure); 0 if all passed."""
    results = []
    for name, cmd in CHECKS:
        start = time.monotonic()
        proc = subprocess.run(cmd, cwd=REPO)
        results.append((name, proc.returncode, time.monotonic() - start))
    for name, code, seconds in results:
        print(f"gate: {name}: {'ok' if code == 0 else f'FAILED (exit {code})'} in {seconds:.2f} s")
    return 0 if all(code == 0 for _, code, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
