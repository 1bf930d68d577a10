"""The SDK's live tests (clients/python/tests/test_live.py) against this session's e2e server."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "clients" / "python" / "tests"))

from test_live import *  # noqa: F403  (tests and their module-scoped fixtures)


@pytest.fixture(scope="module")
def live_base_url(live_server) -> str:
    """The e2e server's API root (replaces test_live's ``$INTERLEAVE_TEST_BASE_URL``)."""
    return live_server.v1
