"""tests/deploy: the deployment artifacts (Dockerfiles, compose files, nginx template, Kubernetes
manifests) and replicas behind a real nginx. Every test here gets the ``deploy`` marker.

The static checks (hadolint, ``docker compose config``, the Kubernetes API schemas) need no engine;
the load-balancer and drain tests start real ``interleave-serve`` processes and must run under the
shared engine lock (``flock /tmp/engine.lock ...``) on shared machines.
"""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config, items):
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.deploy)
