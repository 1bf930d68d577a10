"""The ``ray`` tests: a local Ray cluster serving the app through Ray Serve, 2 replicas of the tiny model.

Every test here is marked ``ray``. The cluster (``ray start --head`` on loopback, 3 logical CPUs) and
the deployment (``serve deploy`` of a config derived from deploy/ray/serve_config.yaml) are started
once for the package and stopped (``ray stop --force``, then any process of the cluster that is left)
after its last test. Measured numbers (cluster and replica start, load, memory per replica) are
printed in pytest's terminal summary.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))  # ray_cluster, ray_app

from ray_app import (  # noqa: E402
    APP,
    DEPLOY_TIMEOUT_S,
    DEPLOYMENT,
    MAX_MODEL_LEN,
    NUM_CPUS,
    NUM_REPLICAS,
    cpu_serve_config,
    mixed_bodies,
)

LOGS_DIR = REPO / ".cache" / "ray-test-logs"
"""Where the logs of the last run's cluster are copied (serve/: controller, proxy, replicas;
worker-*.err: the replicas' stderr, vLLM's engine logs)."""

NUMBERS: dict[str, object] = {}
"""Measurements reported in the terminal summary."""
_CLUSTER: dict[str, object] = {}


@pytest.fixture(scope="session")
def numbers() -> dict[str, object]:
    return NUMBERS


@pytest.fixture(scope="session")
def reference(tiny_checkpoint_path, tmp_path_factory):
    """Greedy answers of a plain ``interleave-serve`` (same checkpoint and engine settings) to the
    mixed requests of the load test, computed before the Ray cluster starts (so at most two engines
    run at once). ``{index: text}`` of :func:`mixed_bodies`."""
    import asyncio

    from harness.load import run_load
    from harness.servers import start_tiny_server

    server = start_tiny_server(
        tmp_path_factory.mktemp("plain") / "server.log", tiny_checkpoint_path, max_model_len=MAX_MODEL_LEN
    )
    try:
        NUMBERS["plain server start (s)"] = round(server.start_seconds, 1)
        outcomes = asyncio.run(run_load(server.base_url, mixed_bodies(), concurrency=1))
        bad = [o for o in outcomes if not o.ok]
        assert not bad, f"plain server failed {bad}:\n{server.log_tail()}"
        return {o.index: o.text for o in outcomes}
    finally:
        server.stop()


@pytest.fixture(scope="session")
def cluster(reference):
    """A local Ray cluster (loopback, 3 logical CPUs), stopped after the last test of the session."""
    from ray_cluster import start_head

    c = start_head(NUM_CPUS)
    _CLUSTER["c"] = c
    _CLUSTER["logs"] = LOGS_DIR
    NUMBERS["ray cluster start (s)"] = round(c.start_seconds, 1)
    yield c
    _stop_cluster()


def _stop_cluster() -> None:
    """Stop the cluster if it runs (after the last ray test, so no engine outlives the package)."""
    c = _CLUSTER.pop("c", None)
    if c is None:
        return
    left = c.stop(keep_logs=_CLUSTER.get("logs"))
    NUMBERS["Ray logs kept in"] = str(_CLUSTER.get("logs"))
    NUMBERS["processes left after ray stop --force"] = len(left)
    assert not left, f"processes of the Ray cluster left after ray stop --force: {left}"


def pytest_runtest_teardown(item, nextitem):
    if not Path(str(item.fspath)).resolve().is_relative_to(HERE):
        return
    if nextitem is None or not Path(str(nextitem.fspath)).resolve().is_relative_to(HERE):
        _stop_cluster()


def pytest_sessionfinish(session, exitstatus):
    _stop_cluster()


@pytest.fixture(scope="session")
def deployed(cluster, tiny_checkpoint_path, tmp_path_factory):
    """``serve deploy`` of :func:`cpu_serve_config`; waits for 2 RUNNING replicas.

    Returns:
        The RUNNING replicas' details (Ray Serve's REST API: ``replica_id``, ``pid``, ``actor_name``).
    """
    path = tmp_path_factory.mktemp("serve") / "serve_config.yaml"
    path.write_text(yaml.safe_dump(cpu_serve_config(tiny_checkpoint_path, cluster.serve_port)))
    t0 = time.perf_counter()
    cluster.cli("serve", "deploy", str(path))
    try:
        replicas = cluster.wait_running(APP, DEPLOYMENT, NUM_REPLICAS, DEPLOY_TIMEOUT_S)
    except RuntimeError as exc:
        raise RuntimeError(f"{exc}\n{cluster.log_tail()}") from None
    NUMBERS["serve deploy -> 2 replicas RUNNING (s)"] = round(time.perf_counter() - t0, 1)
    NUMBERS["memory per replica (PSS MiB, replica + engine core + worker)"] = [
        cluster.tree_pss_mib(r["pid"]) for r in replicas
    ]
    NUMBERS["memory of Ray itself (PSS MiB, gcs, raylet, dashboard, controller, proxy, agents)"] = (
        cluster.ray_system_pss_mib(exclude_pids=[r["pid"] for r in replicas])
    )
    return replicas


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On a failed ray test, attach the tail of the Serve logs."""
    outcome = yield
    report = outcome.get_result()
    c = _CLUSTER.get("c")
    if report.failed and c is not None:
        report.sections.append(("Ray Serve logs (tail)", c.log_tail()))


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if NUMBERS:
        terminalreporter.section("ray: measured")
        for key, value in NUMBERS.items():
            terminalreporter.write_line(f"{key}: {value}")
