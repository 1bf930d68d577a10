"""The app on Ray Serve: 2 replicas of the tiny model behind Ray Serve's HTTP proxy on a local cluster.

- a bounded mixed load (text, images, a video, a scene; streaming and not) all succeeds, both replicas
  serve part of it, and every greedy answer equals the plain ``interleave-serve``'s for that request;
- killing one replica's actor process mid-load: requests that were not running on it succeed, Ray
  starts a replacement, the deployment is back at 2 RUNNING replicas and the new one serves;
- a replica whose engine dies fails Ray's health check and is replaced;
- removing the app while a stream runs: the stream finishes, then replicas and engines exit;
- ``serve run server.ray_serve:app key=value ...`` serves the same answers.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time

import httpx
import psutil
import yaml
from ray_app import APP, DEPLOY_TIMEOUT_S, DEPLOYMENT, NUM_REPLICAS, TINY_ARGS, mixed_bodies

from harness.load import Outcome, mixed_body, run_load, send_chat, summary
from harness.processes import alive, wait_gone
from server.ray_serve import REPLICA_HEADER

ROUNDS = 2
RUN_APP = "interleave-run"
CONCURRENCY = 4
STREAM_TOKENS = 3000
"""Tokens of the stream that must outlast the start of the shutdown (the tiny model makes ~150 tokens
per second here: ~20 s, while `serve deploy` takes a few seconds to reach the replicas)."""


def test_readiness_through_the_proxy(cluster, deployed):
    with httpx.Client(base_url=cluster.serve_url, timeout=30) as client:
        assert client.get("/ready").status_code == 200
        models = client.get("/v1/models").json()
        assert models["data"][0]["id"] == "tiny-seed0"
        assert client.get("/ready").headers[REPLICA_HEADER] in {r["replica_id"] for r in deployed}
        # one x-request-id, the client's (Ray's proxy forwards it and puts it on the response)
        r = client.post(
            "/v1/chat/completions", json=mixed_body(0, max_tokens=2), headers={"x-request-id": "ray-test-1"}
        )
        assert r.status_code == 200, r.text
        assert r.headers.get_list("x-request-id") == ["ray-test-1"]


def test_mixed_load_on_two_replicas_matches_the_plain_server(cluster, deployed, reference, numbers):
    bodies = mixed_bodies() * ROUNDS
    t0 = time.perf_counter()
    outcomes = asyncio.run(run_load(cluster.serve_url, bodies, concurrency=CONCURRENCY))
    wall = time.perf_counter() - t0
    failed = [o for o in outcomes if not o.ok]
    assert not failed, f"failed through Ray Serve: {failed}"

    per_kind = len(mixed_bodies())
    wrong = [
        (o.index, o.text, reference[o.index % per_kind])
        for o in outcomes
        if o.text != reference[o.index % per_kind]
    ]
    assert not wrong, f"answers differ from the plain interleave-serve (index, ray, plain): {wrong}"

    served_by = {}
    for o in outcomes:
        served_by.setdefault(o.headers.get(REPLICA_HEADER), 0)
        served_by[o.headers.get(REPLICA_HEADER)] += 1
    assert set(served_by) == {r["replica_id"] for r in deployed}, served_by
    numbers["mixed load"] = {
        **summary(outcomes),
        "concurrency": CONCURRENCY,
        "wall_s": round(wall, 1),
        "requests per replica": sorted(served_by.values()),
    }


def test_killed_replica_is_replaced_and_requests_not_on_it_succeed(cluster, deployed, numbers):
    victim = deployed[0]
    survivor_ids = {r["replica_id"] for r in deployed[1:]}
    children = psutil.Process(victim["pid"]).children(recursive=True)  # its engine core and worker
    kill_at: list[float] = []
    probe: dict[str, object] = {}

    async def kill_while_it_streams(client: httpx.AsyncClient, url: str) -> None:
        """Open long streams until one runs on the victim; at its first chunk, SIGKILL the victim."""
        for k in range(20):
            body = mixed_body(k, max_tokens=STREAM_TOKENS, stream=True)
            async with client.stream("POST", url, json=body) as resp:
                if resp.headers.get(REPLICA_HEADER) != victim["replica_id"]:
                    continue  # on the survivor: closing it aborts it; try again
                events = 0
                try:
                    async for line in resp.aiter_lines():
                        if not line.startswith("data: "):
                            continue
                        events += 1
                        if events == 1:
                            os.kill(victim["pid"], signal.SIGKILL)
                            kill_at.append(time.perf_counter())
                        if line == "data: [DONE]":
                            probe["done"] = True
                except httpx.HTTPError as exc:
                    probe["error"] = repr(exc)
                probe["events"] = events
                return

    async def load() -> list[Outcome]:
        url = cluster.serve_url + "/v1/chat/completions"
        bodies = [mixed_body(k, max_tokens=24) for k in range(16)]
        sem = asyncio.Semaphore(CONCURRENCY - 1)

        async with httpx.AsyncClient(timeout=300) as client:

            async def one(k: int) -> Outcome:
                async with sem:
                    if k >= 4 and not kill_at:  # mid-load: the first requests ran before the kill
                        await killer
                    return await send_chat(client, url, bodies[k], k)

            killer = asyncio.ensure_future(kill_while_it_streams(client, url))
            outs = list(await asyncio.gather(*(one(k) for k in range(len(bodies)))))
            await killer
            return outs

    outcomes = asyncio.run(load())
    assert kill_at, "no probe stream ran on the victim in 20 tries"
    t_kill = kill_at[0]
    # the stream running on the killed replica did not complete
    assert not probe.get("done"), probe
    started_after = [o for o in outcomes if o.started > t_kill]
    assert started_after, "no request started after the kill"
    late_failures = [o for o in started_after if not o.ok]
    assert not late_failures, f"requests sent after the kill failed: {late_failures}"
    # the only failures allowed: requests running at the moment of the kill, not on the survivor
    failures = [o for o in outcomes if not o.ok]
    for o in failures:
        assert o.started <= t_kill <= o.started + o.seconds, o
        assert o.headers.get(REPLICA_HEADER) not in survivor_ids, o
    survivor_served = [o for o in outcomes if o.headers.get(REPLICA_HEADER) in survivor_ids]
    assert survivor_served and all(o.ok for o in survivor_served)

    # Ray replaces the replica: back to 2 RUNNING replicas, the victim's id gone
    t0 = time.perf_counter()
    replicas = cluster.wait_running(
        APP, DEPLOYMENT, NUM_REPLICAS, DEPLOY_TIMEOUT_S, exclude={victim["replica_id"]}
    )
    replaced_s = time.perf_counter() - t0
    new_ids = {r["replica_id"] for r in replicas} - survivor_ids
    assert len(new_ids) == 1, replicas

    # the victim's engine processes went with it (no engine left behind by a killed replica)
    assert not [p for p in children if alive(p)], children

    # and the replacement serves: requests spread over both replicas again (bounded attempts)
    seen: set[str] = set()
    with httpx.Client(base_url=cluster.serve_url, timeout=120) as client:
        for k in range(40):
            r = client.post("/v1/chat/completions", json=mixed_body(k, max_tokens=2, stream=False))
            assert r.status_code == 200, r.text
            seen.add(r.headers[REPLICA_HEADER])
            if new_ids <= seen:
                break
    assert new_ids <= seen, f"the replacement {new_ids} served none of 40 requests ({seen})"
    numbers["kill one replica mid-load"] = {
        **summary(outcomes),
        "failed (running on the killed replica)": len(failures),
        "the stream running on the killed replica": f"cut after {probe.get('events')} events",
        "started after the kill (all ok)": len(started_after),
        "replacement RUNNING after (s)": round(replaced_s, 1),
    }


def test_a_dead_engine_fails_the_health_check_and_the_replica_is_replaced(cluster, deployed, numbers):
    """SIGKILL of one replica's vLLM engine core: the replica's readiness fails (engine dead), so does
    Ray's health check, and Ray replaces the replica; the service keeps answering meanwhile."""
    replicas = cluster.wait_running(APP, DEPLOYMENT, NUM_REPLICAS, DEPLOY_TIMEOUT_S)
    victim = replicas[0]
    children = psutil.Process(victim["pid"]).children(recursive=True)
    engines = [p for p in children if "EngineCor" in p.name()]  # VLLM::EngineCore (comm: 15 chars)
    assert engines, children
    t0 = time.perf_counter()
    engines[0].kill()
    others = {r["replica_id"] for r in replicas[1:]}
    after = cluster.wait_running(
        APP, DEPLOYMENT, NUM_REPLICAS, DEPLOY_TIMEOUT_S, exclude={victim["replica_id"]}
    )
    numbers["engine core killed -> its replica replaced, 2 RUNNING (s)"] = round(time.perf_counter() - t0, 1)
    assert others <= {r["replica_id"] for r in after}
    with httpx.Client(base_url=cluster.serve_url, timeout=120) as client:
        for k in range(4):
            r = client.post("/v1/chat/completions", json=mixed_body(k, max_tokens=2, stream=False))
            assert r.status_code == 200, r.text


def test_removing_the_app_drains_in_flight_requests(cluster, deployed, tmp_path):
    """Graceful shutdown (the app removed from the Serve config): a stream that runs on a replica when
    the app is removed finishes with ``[DONE]`` while its replica waits; then every replica process
    and its engine processes exit on their own (the drain and the lifespan's engine shutdown)."""
    import threading

    pids = {r["replica_id"]: r["pid"] for r in cluster.replicas(APP, DEPLOYMENT)}
    trees = []
    for pid in pids.values():
        root = psutil.Process(pid)
        trees += [root, *root.children(recursive=True)]
    empty = tmp_path / "no_apps.yaml"
    empty.write_text(
        yaml.safe_dump(
            {"http_options": {"host": "127.0.0.1", "port": cluster.serve_port}, "applications": []}
        )
    )
    removed_at: list[float] = []
    statuses: set[str] = set()

    def remove_the_app() -> None:
        # a config without the application: Serve deletes it, stopping its replicas gracefully
        cluster.cli("serve", "deploy", str(empty))
        removed_at.append(time.perf_counter())
        statuses.add(cluster.app_status(APP))

    remover = threading.Thread(target=remove_the_app)
    outcome = Outcome(0, stream=True)
    with httpx.Client(base_url=cluster.serve_url, timeout=300) as client:
        body = mixed_body(0, max_tokens=STREAM_TOKENS, stream=True)
        with client.stream("POST", "/v1/chat/completions", json=body) as resp:
            outcome.status = resp.status_code
            serving = psutil.Process(pids[resp.headers[REPLICA_HEADER]])
            for line in resp.iter_lines():
                if not line.startswith("data: "):
                    continue
                if remover.ident is None:  # first event: the request runs on a replica; remove the app
                    remover.start()
                if line == "data: [DONE]":
                    outcome.done = True
                    break
                if '"error"' in line:
                    outcome.error = line
    done_at = time.perf_counter()
    serving_alive_at_done = serving.is_running()
    remover.join(timeout=300)
    assert outcome.status == 200 and outcome.done and outcome.error is None, outcome
    assert removed_at and removed_at[0] < done_at, "the stream ended before the app was removed"
    assert statuses <= {"DELETING", "NOT_STARTED"}, statuses
    assert serving_alive_at_done, "the replica serving the stream stopped before the stream ended"
    left = wait_gone(trees, timeout=120)
    assert not left, f"still running after the app was removed: {left}"


def test_serve_run_of_the_import_path(cluster, deployed, reference, tiny_checkpoint_path, numbers):
    """``serve run server.ray_serve:app key=value ...`` (no config file) deploys the same app: one
    replica, settings from the arguments, the same greedy answer as the plain server."""
    args = [f"model={tiny_checkpoint_path}", *(f"{k}={v}" for k, v in TINY_ARGS.items())]
    t0 = time.perf_counter()
    cluster.cli(
        "serve",
        "run",
        "--non-blocking",
        "--name",
        RUN_APP,
        "--route-prefix",
        "/",
        "--runtime-env-json",
        json.dumps({"env_vars": {"VLLM_CPU_KVCACHE_SPACE": "1"}}),
        "server.ray_serve:app",
        *args,
        timeout=DEPLOY_TIMEOUT_S,
    )
    (replica,) = cluster.wait_running(RUN_APP, DEPLOYMENT, 1, DEPLOY_TIMEOUT_S)
    numbers["serve run server.ray_serve:app -> 1 replica RUNNING (s)"] = round(time.perf_counter() - t0, 1)
    with httpx.Client(base_url=cluster.serve_url, timeout=120) as client:
        assert client.get("/ready").status_code == 200
        r = client.post("/v1/chat/completions", json=mixed_bodies()[0])
        assert r.status_code == 200, r.text
        assert r.headers[REPLICA_HEADER] == replica["replica_id"]
        assert r.json()["choices"][0]["message"]["content"] == reference[0]
