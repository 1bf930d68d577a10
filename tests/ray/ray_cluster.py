"""A local Ray cluster for the ``ray`` tests: ``ray start --head`` on loopback with a few CPUs, every
port picked free, its own temp dir; ``serve deploy`` of a Serve config; Ray Serve's REST API for the
replica states; ``ray stop --force`` at the end.

Ray's dashboard runs (on 127.0.0.1): ``serve deploy`` and ``serve status`` are clients of its REST API.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from harness.processes import alive

BIN = Path(sys.executable).parent
"""The venv's bin folder (ray, serve)."""

STOP_GRACE_SECONDS = 60.0
"""How long after ``ray stop --force`` the engine processes of the replicas may take to exit (they get
SIGTERM when their replica dies and shut vLLM down; slower on a busy machine)."""

NODE_IP = "127.0.0.2"
"""The node's address: loopback, but not 127.0.0.1, which Ray replaces by the machine's interface
address (``ray._private.services.resolve_ip_for_localhost``)."""


@dataclass
class RayCluster:
    """A running single-node Ray cluster.

    Attributes:
        gcs_address: ``127.0.0.2:PORT`` of the head's GCS (what ``RAY_ADDRESS`` names).
        dashboard_url: ``http://127.0.0.1:PORT`` (Serve's REST API).
        serve_port: the port the Serve config's HTTP proxy is told to bind.
        temp_dir: Ray's temp / session folder (removed by :meth:`stop`).
        env: the environment for ray / serve commands.
        start_seconds: seconds ``ray start --head`` took.
    """

    gcs_address: str
    dashboard_url: str
    serve_port: int
    temp_dir: Path
    env: dict[str, str]
    start_seconds: float = 0.0
    log: list[str] = field(default_factory=list)
    _seen: dict[int, psutil.Process] = field(default_factory=dict)

    @property
    def serve_url(self) -> str:
        return f"http://127.0.0.1:{self.serve_port}"

    def cli(self, *args: str, timeout: float = 300.0, check: bool = True) -> subprocess.CompletedProcess:
        """Run ``ray`` / ``serve`` (``args[0]``) against this cluster; output kept in :attr:`log`."""
        cmd = [str(BIN / args[0]), *args[1:]]
        proc = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=timeout)
        self.log.append(f"$ {' '.join(args)}\n{proc.stdout}{proc.stderr}")
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        return proc

    def serve_details(self) -> dict:
        """Ray Serve's instance details (``GET /api/serve/applications/``)."""
        r = httpx.get(self.dashboard_url + "/api/serve/applications/", timeout=10)
        r.raise_for_status()
        return r.json()

    def replicas(self, app: str, deployment: str) -> list[dict]:
        """The deployment's replicas (``replica_id``, ``state``, ``pid``, ``actor_name``, ...)."""
        apps = self.serve_details().get("applications") or {}
        dep = ((apps.get(app) or {}).get("deployments") or {}).get(deployment) or {}
        return list(dep.get("replicas") or [])

    def app_status(self, app: str) -> str:
        apps = self.serve_details().get("applications") or {}
        return (apps.get(app) or {}).get("status", "NOT_STARTED")

    def wait_running(
        self, app: str, deployment: str, n: int, timeout: float, *, exclude: set[str] = frozenset()
    ) -> list[dict]:
        """Wait until the app is RUNNING with ``n`` RUNNING replicas (none of them in ``exclude``).

        Raises:
            RuntimeError: the app failed to deploy, or the deadline passed (with the last details).
        """
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            try:
                details = self.serve_details()
                last = details
                application = (details.get("applications") or {}).get(app) or {}
                if application.get("status") == "DEPLOY_FAILED":
                    raise RuntimeError(f"deploy failed: {application.get('message')}")
                reps = ((application.get("deployments") or {}).get(deployment) or {}).get("replicas") or []
                running = [
                    r for r in reps if r.get("state") == "RUNNING" and r.get("replica_id") not in exclude
                ]
                if application.get("status") == "RUNNING" and len(running) == n and len(reps) == n:
                    return running
            except httpx.HTTPError as exc:
                last = exc
            time.sleep(1.0)
        raise RuntimeError(f"{app}/{deployment}: not {n} running replicas after {timeout:.0f} s: {last}")

    def processes(self) -> list[psutil.Process]:
        """Processes of this cluster still alive: the ones whose command line names its temp dir
        (gcs_server, raylet, dashboard, ...) and all their descendants (workers, replicas, engines)."""
        roots = []
        for p in psutil.process_iter(["cmdline"]):
            try:
                if any(str(self.temp_dir) in part for part in (p.info["cmdline"] or ())):
                    roots.append(p)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        seen: dict[int, psutil.Process] = {}
        for p in roots:
            seen[p.pid] = p
            try:
                for c in p.children(recursive=True):
                    seen[c.pid] = c
            except psutil.NoSuchProcess:
                continue
        running = [p for p in seen.values() if alive(p)]
        for p in running:
            self._seen.setdefault(p.pid, p)
        return running

    def processes_seen_alive(self) -> list[psutil.Process]:
        """Every process :meth:`processes` ever saw that still runs (same pid and start time), also
        those that lost their parent (an engine core whose replica was killed)."""
        self.processes()
        return [p for p in self._seen.values() if alive(p)]

    def tree_pss_mib(self, pid: int) -> int:
        """Proportional set size (MiB) of process ``pid`` and all its descendants."""
        root = psutil.Process(pid)
        return _pss_mib([root, *root.children(recursive=True)])

    def ray_system_pss_mib(self, exclude_pids: list[int]) -> int:
        """PSS (MiB) of the cluster's processes outside the trees of ``exclude_pids`` (the replicas)."""
        excluded: set[int] = set()
        for pid in exclude_pids:
            try:
                root = psutil.Process(pid)
                excluded |= {root.pid, *(c.pid for c in root.children(recursive=True))}
            except psutil.NoSuchProcess:
                continue
        return _pss_mib([p for p in self.processes() if p.pid not in excluded])

    def log_tail(self, pattern: str = "serve/*.log", n: int = 80) -> str:
        """The last ``n`` lines of each of the cluster's log files matching ``pattern``."""
        out = []
        for path in sorted(self.temp_dir.glob(f"session_latest/logs/{pattern}")):
            lines = path.read_text(errors="replace").splitlines()[-n:]
            out.append(f"==> {path.name} <==\n" + "\n".join(lines))
        return "\n".join(out) or "(no logs)"

    def stop(self, keep_logs: Path | None = None) -> list[psutil.Process]:
        """``ray stop --force``; returns the processes of the cluster still running after it (killed
        then with SIGKILL); copies the cluster's logs to ``keep_logs``; removes the temp dir."""
        self.processes()
        self.cli("ray", "stop", "--force", timeout=120, check=False)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        left = self.processes_seen_alive()
        while left and time.monotonic() < deadline:  # PDEATHSIG'd engine processes take a moment
            time.sleep(0.5)
            left = self.processes_seen_alive()
        for p in left:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(left, timeout=20)
        logs = self.temp_dir / "session_latest" / "logs"
        if keep_logs is not None and logs.is_dir():
            shutil.rmtree(keep_logs, ignore_errors=True)
            shutil.copytree(logs, keep_logs, ignore=shutil.ignore_patterns("*.sock", "events"))
        shutil.rmtree(self.temp_dir, ignore_errors=True)
        return left


def _pss_mib(procs: list[psutil.Process]) -> int:
    total = 0
    for p in procs:
        try:
            total += p.memory_full_info().pss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return round(total / 2**20)


def _free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports on 127.0.0.1 that were free a moment ago."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def start_head(
    num_cpus: int, *, env: dict[str, str] | None = None, object_store_bytes: int = 200 * 2**20
) -> RayCluster:
    """``ray start --head`` on loopback (node address 127.0.0.2) with ``num_cpus`` logical CPUs and free ports.

    Raises:
        RuntimeError: ``ray start`` failed (its output in the message).
    """
    environ = dict(os.environ if env is None else env)
    environ["RAY_USAGE_STATS_ENABLED"] = "0"
    temp_dir = Path(
        tempfile.mkdtemp(prefix="ray", dir="/tmp")
    )  # short: Ray's socket paths must fit 107 bytes
    ports = _free_ports(10 + 24)
    gcs_port, dash_port, serve_port = ports[:3]
    named = dict(
        zip(
            [
                "--object-manager-port",
                "--node-manager-port",
                "--dashboard-agent-listen-port",
                "--dashboard-agent-grpc-port",
                "--runtime-env-agent-port",
                "--metrics-export-port",
                "--ray-client-server-port",
            ],
            ports[3:10],
            strict=True,
        )
    )
    worker_ports = ",".join(
        str(p) for p in ports[10:]
    )  # one per worker process (controller, proxy, replicas, ...)
    cluster = RayCluster(
        gcs_address=f"{NODE_IP}:{gcs_port}",
        dashboard_url=f"http://127.0.0.1:{dash_port}",
        serve_port=serve_port,
        temp_dir=temp_dir,
        env={
            **environ,
            "RAY_ADDRESS": f"{NODE_IP}:{gcs_port}",
            "RAY_DASHBOARD_ADDRESS": f"http://127.0.0.1:{dash_port}",
        },
    )
    args = [
        "ray",
        "start",
        "--head",
        "--node-ip-address",
        NODE_IP,
        "--port",
        str(gcs_port),
        "--num-cpus",
        str(num_cpus),
        "--num-gpus",
        "0",
        "--object-store-memory",
        str(object_store_bytes),
        "--include-dashboard",
        "true",
        "--dashboard-host",
        "127.0.0.1",
        "--dashboard-port",
        str(dash_port),
        "--worker-port-list",
        worker_ports,
        "--temp-dir",
        str(temp_dir),
        "--disable-usage-stats",
    ]
    for flag, port in named.items():
        args += [flag, str(port)]
    env_start = dict(cluster.env)
    env_start.pop("RAY_ADDRESS")  # ray start --head must not try to join a cluster
    t0 = time.perf_counter()
    proc = subprocess.run(
        [str(BIN / "ray"), *args[1:]], env=env_start, capture_output=True, text=True, timeout=300
    )
    cluster.log.append(f"$ {' '.join(args)}\n{proc.stdout}{proc.stderr}")
    if proc.returncode != 0:
        cluster.stop()
        raise RuntimeError(f"ray start --head failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    # the dashboard (Serve's REST API) comes up a moment after `ray start` returns
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(cluster.dashboard_url + "/api/version", timeout=5).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            cluster.stop()
            raise RuntimeError("Ray's dashboard did not answer within 120 s:\n" + "\n".join(cluster.log))
        time.sleep(0.5)
    cluster.start_seconds = time.perf_counter() - t0
    return cluster
