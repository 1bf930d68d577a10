"""Two ``interleave-serve`` replicas (tiny model) behind a real nginx, configured by the project's
template (``docker/nginx.conf.template``) rendered for loopback.

- a mixed load (text, an image, a video; streaming and not) all succeeds and both replicas serve it;
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
import base64
import io
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

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


# --- media ---------------------------------------------------------------------------------------


def _image_data_url() -> str:
    """A 512x512 noise PNG (about 1 MB as base64): far above nginx's default 16 KiB body buffer, so
    the template's client_body_buffer_size is what keeps it in memory."""
    from PIL import Image

    pixels = np.random.default_rng(0).integers(0, 256, (512, 512, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _video_data_url() -> str:
    """An 8-frame 64x64 H.264 clip."""
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=8)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for t in range(8):
            frame = np.full((64, 64, 3), (t * 30) % 256, np.uint8)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode())
    return "data:video/mp4;base64," + base64.b64encode(buf.getvalue()).decode()


KINDS = ("text", "text-stream", "image", "video-stream", "image-stream", "video")


def _content(kind: str, media: dict[str, str]) -> list[dict]:
    parts: list[dict] = [{"type": "text", "text": f"Describe this ({kind})."}]
    if kind.startswith("image"):
        parts.append({"type": "image_url", "image_url": {"url": media["image"]}})
    if kind.startswith("video"):
        parts.append({"type": "video_url", "video_url": {"url": media["video"], "num_frames": 2}})
    return parts


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

    def by_addr(self, addr: str) -> Replica:
        return next(r for r in self.replicas if r.addr == addr)

    def start(self, replica: Replica) -> None:
        """(Re)start one replica on its port and wait for /ready."""
        replica.starts += 1
        cmd = interleave_serve_command(
            replica.port,
            *TINY_ENGINE_FLAGS,
            "--max-model-len", "4096",
            "--drain-timeout-seconds", str(DRAIN_TIMEOUT_S),
            "--default-max-tokens", "16",
        )
        env = clean_environment(INTERLEAVE_CACHE_DIR=str(self.checkpoint_dir))
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
                    json={"model": self.model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1},
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
def media() -> dict[str, str]:
    return {"image": _image_data_url(), "video": _video_data_url()}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, tiny_checkpoint_path) -> Cluster:
    """nginx (the project's template) in front of two replicas on free loopback ports."""
    nginx_bin, envsubst = ensure_nginx()
    root = tmp_path_factory.mktemp("lb")
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


@dataclass
class Outcome:
    rid: str
    kind: str
    start: float
    end: float = 0.0
    status: int = 0
    ok: bool = False
    error: str = ""
    chunks: int = 0
    entry: AccessEntry | None = None


@dataclass
class LoadResult:
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.ok]

    def attach(self, log: Path) -> None:
        entries = _wait_for_entries(log, [o.rid for o in self.outcomes])
        for o in self.outcomes:
            o.entry = entries[o.rid]

    def split(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for o in self.outcomes:
            if o.ok and o.entry is not None:
                counts[o.entry.final_upstream] = counts.get(o.entry.final_upstream, 0) + 1
        return counts


async def _one(client: httpx.AsyncClient, model: str, kind: str, rid: str, media: dict[str, str]) -> Outcome:
    stream = kind.endswith("stream")
    body = {
        "model": model,
        "messages": [{"role": "user", "content": _content(kind, media)}],
        "max_tokens": STREAM_MAX_TOKENS if stream else MAX_TOKENS,
        "stream": stream,
    }
    out = Outcome(rid, kind, time.time())
    try:
        if not stream:
            resp = await client.post(CHAT, json=body, headers={"x-request-id": rid})
            out.status = resp.status_code
            out.ok = resp.status_code == 200 and bool(resp.json()["choices"])
            if not out.ok:
                out.error = resp.text[:300]
        else:
            async with client.stream("POST", CHAT, json=body, headers={"x-request-id": rid}) as resp:
                out.status = resp.status_code
                if resp.status_code != 200:
                    out.error = (await resp.aread()).decode(errors="replace")[:300]
                else:
                    done = False
                    async for line in resp.aiter_lines():
                        if not line.startswith("data: "):
                            continue
                        if line == "data: [DONE]":
                            done = True
                        elif '"error"' in line[:20]:
                            out.error = line[:300]
                        else:
                            out.chunks += 1
                    out.ok = done and not out.error and out.chunks > 0
                    if not done and not out.error:
                        out.error = f"stream ended without [DONE] after {out.chunks} chunks"
    except httpx.HTTPError as exc:
        out.error = f"{type(exc).__name__}: {exc}"
    out.end = time.time()
    return out


async def _run_load(
    cluster: Cluster,
    media: dict[str, str],
    *,
    tag: str,
    total: int,
    concurrency: int,
    kinds: tuple[str, ...] = KINDS,
    on_progress=None,
) -> LoadResult:
    """``total`` requests through nginx, ``concurrency`` at a time, kinds in turn. ``on_progress``
    (called after every finished request with the result so far) may send a signal."""
    result = LoadResult()
    counter = iter(range(total))
    lock = asyncio.Lock()
    timeout = httpx.Timeout(120.0, connect=10.0)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=cluster.url, timeout=timeout, limits=limits) as client:

        async def worker() -> None:
            while True:
                async with lock:
                    i = next(counter, None)
                if i is None:
                    return
                outcome = await _one(client, cluster.model, kinds[i % len(kinds)], f"{tag}-{i}", media)
                result.outcomes.append(outcome)
                if on_progress is not None:
                    await on_progress(result)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
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
    retried = sum(1 for o in result.outcomes if o.entry is not None and len(o.entry.upstreams) > 1)
    parts = [f"{title}: {len(result.outcomes)} requests", f"split {split}", f"failed {len(result.failed)}",
             f"retried by nginx {retried}"] + [f"{k} {v}" for k, v in extra.items()]
    line = "; ".join(parts)
    print("\n[lb] " + line)
    return line


def _describe(outcomes: list[Outcome]) -> str:
    return "\n".join(
        f"  {o.rid} {o.kind} status={o.status} err={o.error!r} up={o.entry.upstreams if o.entry else None} "
        f"ust={o.entry.upstream_statuses if o.entry else None}"
        for o in outcomes[:10]
    )


# --- the tests -----------------------------------------------------------------------------------


def test_mixed_load_succeeds_on_both_replicas(cluster: Cluster, media) -> None:
    cluster.ensure_both_serving()
    before = {r.name: _chat_200(_scrape(r)) for r in cluster.replicas}
    result = asyncio.run(_run_load(cluster, media, tag="mixed", total=24, concurrency=6))
    _report("mixed load", result, cluster)
    assert not result.failed, _describe(result.failed)
    assert {o.kind for o in result.outcomes} == set(KINDS)
    split = result.split()
    assert set(split) == {r.addr for r in cluster.replicas}, f"not served by both replicas: {split}"
    # each replica's own count agrees with where nginx says it sent the requests
    for r in cluster.replicas:
        served = _chat_200(_scrape(r)) - before[r.name]
        assert served == split[r.addr], (r.name, served, split)
    # the image bodies (about 1 MB) stayed in nginx's memory: no temporary-file spooling
    error_log = (cluster.nginx_dir / "error.log").read_text(errors="replace")
    assert "buffered to a temporary file" not in error_log, error_log[-2000:]


def test_sigkill_fails_only_requests_in_flight_on_it(cluster: Cluster, media) -> None:
    cluster.ensure_both_serving()
    victim = cluster.replicas[1]
    survivor = cluster.replicas[0]
    killed_at: list[float] = []

    async def kill_when_busy(result: LoadResult) -> None:
        if killed_at or len(result.outcomes) < 4:
            return
        deadline = time.monotonic() + 30
        while await _in_flight(victim) < 1:
            assert time.monotonic() < deadline, "the victim never had a request in flight"
            await asyncio.sleep(0.02)
        killed_at.append(time.time())
        victim.server.signal_group(signal.SIGKILL)

    streams = ("text-stream", "image-stream", "video-stream", "text")
    result = asyncio.run(
        _run_load(cluster, media, tag="kill", total=24, concurrency=4, kinds=streams, on_progress=kill_when_busy)
    )
    assert killed_at, "the load ended before the kill"
    victim.server.process.wait(timeout=30)
    t_kill = killed_at[0]
    in_flight_on_victim = [
        o for o in result.outcomes if o.start < t_kill < o.end and victim.addr in (o.entry.upstreams if o.entry else ())
    ]
    # what failed had been sent to the victim and was in flight when it died
    for o in result.failed:
        assert o in in_flight_on_victim, _describe([o])
    # everything that started after the kill succeeded, on the survivor
    after = [o for o in result.outcomes if o.start > t_kill]
    assert all(o.ok for o in after), _describe([o for o in after if not o.ok])
    # and the next requests succeed too, all on the survivor
    nxt = asyncio.run(_run_load(cluster, media, tag="after-kill", total=6, concurrency=3))
    assert not nxt.failed, _describe(nxt.failed)
    assert set(nxt.split()) == {survivor.addr}, nxt.split()
    _report(
        "SIGKILL",
        result,
        cluster,
        **{"in flight on killed replica": len(in_flight_on_victim), "started after kill": len(after),
           "next requests ok": f"{len(nxt.outcomes) - len(nxt.failed)}/{len(nxt.outcomes)}"},
    )


def test_sigterm_to_process_group_drains_without_failures(cluster: Cluster, media) -> None:
    cluster.ensure_both_serving()
    victim = cluster.replicas[0]
    other = cluster.replicas[1]
    signalled_at: list[float] = []
    draining_at: list[float] = []
    exited: dict[str, float] = {}

    def wait_exit() -> None:
        code = victim.server.process.wait(timeout=DRAIN_TIMEOUT_S + 90)
        exited["at"], exited["code"] = time.time(), code

    async def term_when_busy(result: LoadResult) -> None:
        if signalled_at or len(result.outcomes) < 4:
            return
        deadline = time.monotonic() + 30
        while await _in_flight(victim) < 1:
            assert time.monotonic() < deadline, "the victim never had a request in flight"
            await asyncio.sleep(0.02)
        signalled_at.append(time.time())
        victim.server.signal_group(signal.SIGTERM)  # the whole group: the engine processes too
        threading.Thread(target=wait_exit, daemon=True).start()
        # the moment the replica stopped taking requests: /ready 503 (or its port closed)
        async with httpx.AsyncClient(timeout=5) as probe:
            while True:
                assert time.monotonic() < deadline + 30, "/ready never turned 503 after SIGTERM"
                try:
                    if (await probe.get(victim.base_url + "/ready")).status_code == 503:
                        break
                except httpx.HTTPError:
                    break
                await asyncio.sleep(0.01)
        draining_at.append(time.time())

    streams = ("text-stream", "image-stream", "video-stream", "text")
    result = asyncio.run(
        _run_load(cluster, media, tag="term", total=28, concurrency=4, kinds=streams, on_progress=term_when_busy)
    )
    assert signalled_at, "the load ended before the signal"
    t_term = signalled_at[0]
    deadline = time.monotonic() + DRAIN_TIMEOUT_S + 90
    while "code" not in exited and time.monotonic() < deadline:
        time.sleep(0.2)
    log = victim.server.log_text()
    in_flight_on_victim = [
        o for o in result.outcomes if o.start < t_term < o.end and o.entry is not None and o.entry.final_upstream == victim.addr
    ]
    after = [o for o in result.outcomes if o.start > draining_at[0]]
    drain_s = exited.get("at", float("nan")) - t_term
    _report(
        "SIGTERM to the process group",
        result,
        cluster,
        **{"in flight on drained replica": len(in_flight_on_victim), "started after signal": len(after),
           "drain+exit s": f"{drain_s:.1f}", "exit code": exited.get("code")},
    )
    assert not result.failed, _describe(result.failed)
    assert in_flight_on_victim, "no request was in flight on the replica when it got SIGTERM"
    assert all(o.chunks > 0 for o in in_flight_on_victim if o.kind.endswith("stream"))
    # requests that started once the replica was draining were answered by the other one (nginx
    # may have tried the draining one first and got its 503)
    assert after, "no request started after the signal"
    for o in after:
        assert o.entry.final_upstream == other.addr, _describe([o])
    assert exited.get("code") == 0, f"exit {exited.get('code')}:\n{victim.server.log_tail(40)}"
    assert "Traceback" not in log, victim.server.log_tail(80)
