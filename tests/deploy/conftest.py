"""tests/deploy: the deployment artifacts (Dockerfiles, compose files, nginx template, Kubernetes
manifests) and replicas behind a real nginx. Every test here gets the ``deploy``
marker (from tests/conftest.py).

The static checks (hadolint, ``docker compose config``, the Kubernetes API schemas) need no engine;
the load-balancer and drain tests start real ``interleave-serve`` processes and must run under the
shared engine lock (``flock /tmp/engine.lock ...``) on shared machines.
"""
