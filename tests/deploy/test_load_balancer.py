"""Two ``interleave-serve`` replicas (tiny model) behind a real nginx, configured by the project's
template (``docker/nginx.conf.template``) rendered for loopback.

- a mixed load (text, images, a video, a 3D scene, a big image; streaming and not) all succeeds and
  both replicas serve it, their own request counts agreeing with nginx's log;
- SIGKILL of one replica's process group mid-load: only requests in flight on it fail, the next
  ones succeed (nginx moves them to the other replica);
- SIGTERM to one replica's process group mid-load (what systemd, a terminal's Ctrl-C or some
  container inits send): every request that had started on it completes (streams reach
  ``[DONE]``), new requests go to the other replica, 0 failed requests, the replica exits 0.

Which replica served a request comes from nginx's access log (the client's ``x-request-id`` and
``$upstream_addr``), cross-checked with each replica's own ``interleave_requests_total``. Loads are
small (two engines share 2 CPU cores). Run under the engine lock on shared machines:
``flock /tmp/engine.lock timeout 1500 .venv/bin/pytest tests/deploy/test_load_balancer.py``.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import shutil
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from harness.load import Outcome, mixed_body, send_chat
from harness.media import data_url, gradient_image, png_bytes
from harness.processes import wait_gone
from harness.servers import (
    TINY_ENGINE_FLAGS,
    RunningServer,
    clean_environment,
    free_port,
    interleave_serve_command,
    start_server,
)
from server.settings import ServerSettings
from tests.deploy.nginx_lb import (
    AccessEntry,
    ensure_nginx,
    nginx_command,
    read_access_log,
    render_template,
    write_main_conf,
)

DRAIN_TIMEOUT_S = 30.0
MAX_TOKENS = 8
STREAM_MAX_TOKENS = 32  # long enough that a stream is in flight when the signal comes
CHAT = "/v1/chat/completions"
LOG_DIR = Path(__file__).resolve().parents[2] / ".cache" / "deploy-lb"


# --- requests ------------------------------------------------------------------------------------


def _big_image_body(k: int, model: str, stream: bool) -> dict:
    """One 512x512 noisy PNG (about 0.6 MB as base64): far above nginx's default 16 KiB body buffer,
    so the template's client_body_buffer_size is what keeps it in memory."""
    url = data_url(png_bytes(gradient_image(512, 512, seed=k)))
    content = [
        {"type": "text", "text": f"Request {k}: what is this?"},
        {"type": "image_url", "image_url": {"url": url}},
    ]
    return {
        "model": model,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": MAX_TOKENS,
        "stream": stream,
    }


def mixed(model: str, *, streams_max_tokens: int = MAX_TOKENS, streams: str = "half"):
    """Request ``k`` of a load: the shared mixed load (text, images, a video, a 3D scene), every 7th
    a big image; ``streams``: ``"half"`` (every other one streams), ``"most"`` (3 of 4), ``"all"``."""

    def body(k: int) -> dict:
        stream = {"half": k % 2 == 1, "most": k % 4 != 3, "all": True}[streams]
        if k % 7 == 6:
            return _big_image_body(k, model, stream)
        b = mixed_body(k, model=model, max_tokens=MAX_TOKENS, stream=stream)
        if b["stream"]:
            b["max_tokens"] = streams_max_tokens
        return b

    return body


# --- the cluster ---------------------------------------------------------------------------------


@dataclass
class Replica:
    name: str
    port: int
    log_dir: Path
    server: RunningServer | None = None
    starts: int = 0

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"http://{self.addr}"

    def alive(self) -> bool:
        return self.server is not None and self.server.process.poll() is None


@dataclass
class Cluster:
    replicas: list[Replica]
    nginx: RunningServer
    nginx_dir: Path
    checkpoint_dir: Path
    model: str = ""

    @property
    def url(self) -> str:
        return self.nginx.base_url

    @property
    def access_log(self) -> Path:
        return self.nginx.log_path

    def start(self, replica: Replica) -> None:
        """(Re)start one replica on its port and wait for /ready."""
        replica.starts += 1
        cmd = interleave_serve_command(
            replica.port,
            *TINY_ENGINE_FLAGS,
            "--max-model-len",
            "4096",
            "--drain-timeout-seconds",
            str(DRAIN_TIMEOUT_S),
            "--default-max-tokens",
            "16",
        )
        # each replica's engine threads on a core of their own, as compose pins each replica to its
        # cpuset (vLLM's automatic binding would put both engines on the same core)
        core = self.replicas.index(replica) % (os.cpu_count() or 1)
        env = clean_environment(
            INTERLEAVE_CACHE_DIR=str(self.checkpoint_dir), VLLM_CPU_OMP_THREADS_BIND=str(core)
        )
        replica.server = start_server(
            cmd,
            ready_url=replica.base_url + "/ready",
            log_path=replica.log_dir / f"{replica.name}-{replica.starts}.log",
            env=env,
            timeout=600,
        )

    def ensure_both_serving(self, deadline_s: float = 120.0) -> None:
        """Restart any dead replica, then send requests through nginx until each replica served one
        (nginx retries a replica it marked failed only after fail_timeout)."""
        dead = [r for r in self.replicas if not r.alive()]
        with ThreadPoolExecutor(len(self.replicas)) as pool:
            list(pool.map(self.start, dead))
        seen: set[str] = set()
        deadline = time.monotonic() + deadline_s
        i = 0
        with httpx.Client(base_url=self.url, timeout=60) as client:
            while seen != {r.addr for r in self.replicas}:
                assert time.monotonic() < deadline, f"nginx did not route to every replica (saw {seen})"
                rid = f"warm-{time.time_ns()}-{i}"
                i += 1
                resp = client.post(
                    CHAT,
                    headers={"x-request-id": rid},
                    json={
                        "model": self.model,
                        "messages": [{"role": "user", "content": "hi"}],
                        "max_tokens": 1,
                    },
                )
                assert resp.status_code == 200, resp.text
                entry = _wait_for_entries(self.access_log, [rid])[rid]
                seen.add(entry.final_upstream)
                time.sleep(0.25)  # pacing while nginx waits out fail_timeout of a restarted replica

    def stop(self) -> None:
        for r in self.replicas:
            if r.server is not None:
                r.server.stop(timeout=60)
        self.nginx.stop(timeout=10)


def _wait_for_entries(log: Path, rids: list[str], timeout: float = 10.0) -> dict[str, AccessEntry]:
    """The access log entries of ``rids`` (nginx writes a line when a request ends)."""
    deadline = time.monotonic() + timeout
    while True:
        entries = read_access_log(log)
        if all(r in entries for r in rids) or time.monotonic() > deadline:
            missing = [r for r in rids if r not in entries]
            assert not missing, f"no access log line for {missing[:5]}"
            return entries
        time.sleep(0.1)


@pytest.fixture(scope="module")
def cluster(tiny_checkpoint_path) -> Cluster:
    """nginx (the project's template) in front of two replicas on free loopback ports."""
    nginx_bin, envsubst = ensure_nginx()
    root = LOG_DIR  # the logs of the last run stay there (not in pytest's short-lived tmp folders)
    shutil.rmtree(root, ignore_errors=True)
    replicas = [Replica(name, free_port(), root) for name in ("replica-a", "replica-b")]
    nginx_port = free_port()
    rendered = render_template(
        envsubst,
        {
            "NGINX_LISTEN": f"127.0.0.1:{nginx_port}",
            "NGINX_UPSTREAM_SERVERS": " ".join(
                f"server {r.addr} max_fails=1 fail_timeout=10s;" for r in replicas
            ),
            # the server's default --max-request-bytes, as docker/compose.yaml sets it for both
            "INTERLEAVE_MAX_REQUEST_BYTES": str(ServerSettings.model_fields["max_request_bytes"].default),
        },
    )
    nginx_dir = root / "nginx"
    conf = write_main_conf(nginx_dir, rendered)
    nginx = start_server(
        nginx_command(nginx_bin, conf),
        ready_url=f"http://127.0.0.1:{nginx_port}/nginx-health",
        log_path=root / "nginx.log",
        timeout=30,
    )
    c = Cluster(replicas, nginx, nginx_dir, tiny_checkpoint_path.parent)
    try:
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(c.start, replicas))
        c.model = httpx.get(c.url + "/v1/models", timeout=10).json()["data"][0]["id"]
        yield c
    finally:
        c.stop()


# --- the load ------------------------------------------------------------------------------------

_REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id")


async def _tag_request(request: httpx.Request) -> None:
    """httpx request hook: the x-request-id of the request being sent by this task (nginx logs it)."""
    request.headers["x-request-id"] = _REQUEST_ID.get()


@dataclass
class Sent:
    """One request of a load: what came back (the shared :class:`harness.load.Outcome`), when
    (``time.perf_counter`` seconds), and where nginx sent it."""

    rid: str
    outcome: Outcome
    start: float
    end: float
    entry: AccessEntry | None = None

    @property
    def ok(self) -> bool:
        return self.outcome.ok

    @property
    def stream(self) -> bool:
        return self.outcome.stream


@dataclass
class LoadResult:
    sent: list[Sent] = field(default_factory=list)

    @property
    def failed(self) -> list[Sent]:
        return [s for s in self.sent if not s.ok]

    def attach(self, log: Path) -> None:
        entries = _wait_for_entries(log, [s.rid for s in self.sent])
        for s in self.sent:
            s.entry = entries[s.rid]

    def split(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for s in self.sent:
            if s.ok and s.entry is not None:
                counts[s.entry.final_upstream] = counts.get(s.entry.final_upstream, 0) + 1
        return counts


async def _run_load(
    cluster: Cluster, body, *, tag: str, total: int, concurrency: int, during=None
) -> LoadResult:
    """``total`` requests (``body(k)``) through nginx, ``concurrency`` at a time, each read to its end
    by :func:`harness.load.send_chat`. ``during(result)`` runs beside the load (it may send a signal
    when the load is under way); the load waits for it to finish."""
    result = LoadResult()
    counter = iter(range(total))
    url = cluster.url + CHAT
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    hooks = {"request": [_tag_request]}
    async with httpx.AsyncClient(timeout=httpx.Timeout(120.0), limits=limits, event_hooks=hooks) as client:

        async def worker() -> None:
            while (k := next(counter, None)) is not None:
                rid = f"{tag}-{k}"
                _REQUEST_ID.set(rid)
                start = time.perf_counter()
                outcome = await send_chat(client, url, body(k), k)
                result.sent.append(Sent(rid, outcome, start, time.perf_counter()))

        tasks = [worker() for _ in range(concurrency)] + ([during(result)] if during is not None else [])
        await asyncio.gather(*tasks)
    result.attach(cluster.access_log)
    return result


def _scrape(replica: Replica) -> dict[tuple[str, tuple], float]:
    text = httpx.get(replica.base_url + "/metrics", timeout=10).text
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def _chat_200(samples: dict) -> float:
    return samples.get(("interleave_requests_total", (("endpoint", CHAT), ("status", "200"))), 0.0)


async def _in_flight(replica: Replica) -> float:
    async with httpx.AsyncClient(timeout=5) as client:
        text = (await client.get(replica.base_url + "/metrics")).text
    for family in text_string_to_metric_families(text):
        if family.name == "interleave_requests_in_flight":
            return sum(s.value for s in family.samples)
    raise AssertionError("no interleave_requests_in_flight gauge in /metrics")


def _report(title: str, result: LoadResult, cluster: Cluster, **extra) -> str:
    names = {r.addr: r.name for r in cluster.replicas}
    split = {names.get(k, k): v for k, v in sorted(result.split().items())}
    retried = sum(1 for s in result.sent if s.entry is not None and len(s.entry.upstreams) > 1)
    streams = sum(s.stream for s in result.sent)
    parts = [
        f"{title}: {len(result.sent)} requests ({streams} streams)",
        f"split {split}",
        f"failed {len(result.failed)}",
        f"retried by nginx {retried}",
    ] + [f"{k} {v}" for k, v in extra.items()]
    line = "; ".join(parts)
    print("\n[lb] " + line)
    return line


def _describe(sent: list[Sent]) -> str:
    return "\n".join(
        f"  {s.rid} stream={s.stream} status={s.outcome.status} done={s.outcome.done} err={s.outcome.error!r:.300} "
        f"up={s.entry.upstreams if s.entry else None} ust={s.entry.upstream_statuses if s.entry else None}"
        for s in sent[:10]
    )


class NeverBusy(Exception):
    """A load ended without the replica to signal ever having a request in flight: nginx sent it
    nothing (it had marked it down), so the scenario did not take place."""


def _never_busy(result: LoadResult, cluster: Cluster, replica: Replica) -> str:
    """Why ``replica`` may have had nothing in flight: where nginx sent the load, and nginx's errors."""
    entries = read_access_log(cluster.access_log)
    names = {r.addr: r.name for r in cluster.replicas}
    routes = [
        f"{s.rid}: {[names.get(u, u) for u in e.upstreams]} {list(e.upstream_statuses)}"
        for s in result.sent
        if (e := entries.get(s.rid)) is not None
    ]
    errors = [
        line
        for line in (cluster.nginx_dir / "error.log").read_text(errors="replace").splitlines()
        if "buffered to a temporary file" not in line
    ]
    return (
        f"{replica.name} had no request in flight during the load; nginx sent the load to:\n  "
        + "\n  ".join(routes)
        + "\nnginx error.log (last 15 lines):\n  "
        + "\n  ".join(errors[-15:])
    )


async def _when_busy(
    result: LoadResult, cluster: Cluster, replica: Replica, total: int, after: int = 4
) -> None:
    """Return once ``after`` requests of the load finished and ``replica`` has a request in flight
    (its own gauge, polled every 20 ms).

    Raises:
        NeverBusy: the load ended first (with where nginx sent it).
    """
    while True:
        if len(result.sent) >= total:
            raise NeverBusy(_never_busy(result, cluster, replica))
        if len(result.sent) >= after and await _in_flight(replica) >= 1:
            return
        await asyncio.sleep(0.02)


def _load_signalling(
    cluster: Cluster, body, *, tag: str, total: int, victim: Replica, then, capsys
) -> LoadResult:
    """A load of ``total`` requests (4 at a time) that awaits ``then()`` once ``victim`` has a
    request in flight.

    nginx marks a replica down for ``fail_timeout`` after one failed try, and then sends it nothing;
    a load that ran entirely on the other replica did not test anything. It is run once more, after
    nginx routes to both replicas again, and what nginx did is printed to the terminal (not captured).

    Raises:
        AssertionError: the victim had no request in flight in both loads.
    """
    for attempt in (1, 2):

        async def during(result: LoadResult) -> None:
            await _when_busy(result, cluster, victim, total)
            await then()

        try:
            return asyncio.run(
                _run_load(cluster, body, tag=f"{tag}-{attempt}", total=total, concurrency=4, during=during)
            )
        except NeverBusy as e:
            if attempt == 2:
                raise AssertionError(f"twice: {e}") from None
            with capsys.disabled():
                print(f"\n[lb] {tag}: {e}\n[lb] {tag}: running the load again", flush=True)
            cluster.ensure_both_serving()
    raise AssertionError("unreachable")


# --- the tests -----------------------------------------------------------------------------------


def test_mixed_load_succeeds_on_both_replicas(cluster: Cluster) -> None:
    cluster.ensure_both_serving()
    before = {r.name: _chat_200(_scrape(r)) for r in cluster.replicas}
    result = asyncio.run(_run_load(cluster, mixed(cluster.model), tag="mixed", total=28, concurrency=6))
    _report("mixed load", result, cluster)
    assert not result.failed, _describe(result.failed)
    assert sum(s.stream for s in result.sent) >= 10 and sum(not s.stream for s in result.sent) >= 10
    split = result.split()
    assert set(split) == {r.addr for r in cluster.replicas}, f"not served by both replicas: {split}"
    # each replica's own count agrees with where nginx says it sent the requests
    for r in cluster.replicas:
        served = _chat_200(_scrape(r)) - before[r.name]
        assert served == split[r.addr], (r.name, served, split)
    # the big image bodies stayed in nginx's memory: no temporary-file spooling
    error_log = (cluster.nginx_dir / "error.log").read_text(errors="replace")
    assert "buffered to a temporary file" not in error_log, error_log[-2000:]


def test_sigkill_fails_only_requests_in_flight_on_it(cluster: Cluster, capsys) -> None:
    cluster.ensure_both_serving()
    survivor, victim = cluster.replicas
    killed_at: list[float] = []
    engine_processes: list[psutil.Process] = []

    async def kill() -> None:
        # the engine core (in a process group of its own) and its worker: gone with their server
        engine_processes.extend(psutil.Process(victim.server.process.pid).children(recursive=True))
        killed_at.append(time.perf_counter())
        victim.server.signal_group(signal.SIGKILL)  # the server's group: the server itself

    body = mixed(cluster.model, streams_max_tokens=STREAM_MAX_TOKENS, streams="most")
    result = _load_signalling(cluster, body, tag="kill", total=24, victim=victim, then=kill, capsys=capsys)
    assert killed_at, "the load ended before the kill"
    victim.server.process.wait(timeout=30)
    assert engine_processes, "the server had no engine processes"
    left = wait_gone(engine_processes, timeout=30)
    assert not left, f"engine processes outlived their killed server: {left}"
    t_kill = killed_at[0]
    in_flight_on_victim = [
        s
        for s in result.sent
        if s.start < t_kill < s.end and s.entry is not None and victim.addr in s.entry.upstreams
    ]
    after = [s for s in result.sent if s.start > t_kill]
    # the next requests succeed, all on the survivor
    nxt = asyncio.run(_run_load(cluster, mixed(cluster.model), tag="after-kill", total=6, concurrency=3))
    _report(
        "SIGKILL of one replica's process group",
        result,
        cluster,
        **{
            "in flight on the killed replica": len(in_flight_on_victim),
            "started after the kill": len(after),
            "next requests ok": f"{len(nxt.sent) - len(nxt.failed)}/{len(nxt.sent)}",
        },
    )
    # what failed had been sent to the victim and was in flight when it died
    for s in result.failed:
        assert s in in_flight_on_victim, _describe([s])
    # everything that started after the kill succeeded (nginx moved it to the survivor)
    assert after and all(s.ok for s in after), _describe([s for s in after if not s.ok])
    assert not nxt.failed, _describe(nxt.failed)
    assert set(nxt.split()) == {survivor.addr}, nxt.split()


def test_sigterm_to_process_group_drains_without_failures(cluster: Cluster, capsys) -> None:
    cluster.ensure_both_serving()
    victim, other = cluster.replicas
    signalled_at: list[float] = []
    draining_at: list[float] = []
    exited: dict[str, float] = {}

    def wait_exit() -> None:
        code = victim.server.process.wait(timeout=DRAIN_TIMEOUT_S + 90)
        exited["at"], exited["code"] = time.perf_counter(), code

    async def term() -> None:
        signalled_at.append(time.perf_counter())
        victim.server.signal_group(signal.SIGTERM)  # the whole group, as systemd or Ctrl-C does
        threading.Thread(target=wait_exit, daemon=True).start()
        # from when the replica takes no new requests: /ready 503 (or its port closed)
        deadline = time.monotonic() + 30
        async with httpx.AsyncClient(timeout=5) as probe:
            while time.monotonic() < deadline:
                try:
                    if (await probe.get(victim.base_url + "/ready")).status_code == 503:
                        break
                except httpx.HTTPError:
                    break
                await asyncio.sleep(0.01)
        draining_at.append(time.perf_counter())

    # every request streams, so what is in flight on the replica at the signal is a stream
    body = mixed(cluster.model, streams_max_tokens=STREAM_MAX_TOKENS, streams="all")
    result = _load_signalling(cluster, body, tag="term", total=28, victim=victim, then=term, capsys=capsys)
    assert signalled_at and draining_at, "the load ended before the signal"
    t_term = signalled_at[0]
    deadline = time.monotonic() + DRAIN_TIMEOUT_S + 90
    while "code" not in exited and time.monotonic() < deadline:
        time.sleep(0.2)
    log = victim.server.log_text()
    in_flight_on_victim = [
        s
        for s in result.sent
        if s.start < t_term < s.end and s.entry is not None and s.entry.final_upstream == victim.addr
    ]
    after = [s for s in result.sent if s.start > draining_at[0]]
    _report(
        "SIGTERM to one replica's process group",
        result,
        cluster,
        **{
            "in flight on the draining replica": len(in_flight_on_victim),
            "of them streams": sum(s.stream for s in in_flight_on_victim),
            "started after /ready turned 503": len(after),
            "signal to last in-flight done s": f"{max((s.end for s in in_flight_on_victim), default=t_term) - t_term:.2f}",
            "signal to exit s": f"{exited.get('at', float('nan')) - t_term:.1f}",
            "exit code": exited.get("code"),
        },
    )
    assert not result.failed, _describe(result.failed)
    assert in_flight_on_victim, "no request was in flight on the replica when it got SIGTERM"
    assert all(s.stream and s.outcome.done for s in in_flight_on_victim)  # streams that reached [DONE]
    # requests that started once the replica was draining were answered by the other one (nginx
    # may have tried the draining one first and got its 503)
    assert after, "no request started after the replica began draining"
    for s in after:
        assert s.entry.final_upstream == other.addr, _describe([s])
    assert exited.get("code") == 0, f"exit {exited.get('code')}:\n{victim.server.log_tail(40)}"
    assert "Traceback" not in log, victim.server.log_tail(80)
