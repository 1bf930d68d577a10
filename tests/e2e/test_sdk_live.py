"""The SDK's live tests (clients/python/tests/test_live.py) against this session's server.

That module reads ``INTERLEAVE_TEST_BASE_URL`` when it is imported; tests/e2e/conftest.py sets it to
this session's server before collection, and the autouse fixture below starts the server first.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

SDK_TESTS = Path(__file__).resolve().parents[2] / "clients" / "python" / "tests"
sys.path.insert(0, str(SDK_TESTS))

pytest.importorskip("llava_interleave_client", reason="install the SDK: pip install -e clients/python")

from test_live import *  # noqa: E402,F401,F403  (tests and their module-scoped fixtures)


@pytest.fixture(autouse=True)
def _server_running(live_server):
    """Every SDK live test runs against the session's server (started on first use)."""
    return live_server
