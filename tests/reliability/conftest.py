"""The reliability suite: bounded load, overload, fault injection and broken media against real servers
(loopback only; every loop is bounded in count and time and stops by itself).

ONE shared ``interleave-serve`` on the tiny model (:func:`reliability_server`) takes the load, overload,
seeded-sampling and broken-media tests; tests that kill a server start their own. Every test here is
marked ``reliability``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.servers import RunningServer, start_tiny_server

HERE = Path(__file__).resolve().parent

MAX_MODEL_LEN = 8192
MAX_CONCURRENT_REQUESTS = 20
"""Admission bound of the shared server: above the load test's concurrency (16), far below the
overload test's (96)."""
MAX_IMAGES_IN_FLIGHT = 320


@pytest.fixture(scope="session")
def reliability_server(tmp_path_factory, tiny_checkpoint_path) -> RunningServer:
    """The shared server of the reliability suite (admission bound 20 requests / 320 images)."""
    server = start_tiny_server(
        tmp_path_factory.mktemp("reliability-server") / "server.log",
        tiny_checkpoint_path,
        "--max-concurrent-requests",
        str(MAX_CONCURRENT_REQUESTS),
        "--max-images-in-flight",
        str(MAX_IMAGES_IN_FLIGHT),
        "--default-max-tokens",
        "8",
        "--drain-timeout-seconds",
        "10",
        max_model_len=MAX_MODEL_LEN,
    )
    yield server
    server.stop()


@pytest.fixture(scope="session")
def admission_bound() -> int:
    """The shared server's ``--max-concurrent-requests``."""
    return MAX_CONCURRENT_REQUESTS


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On a failure, attach the tail of the shared server's log."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and "reliability_server" in item.fixturenames:
        server = item.funcargs.get("reliability_server")
        if server is not None:
            report.sections.append(("interleave-serve log (tail)", server.log_tail(80)))
