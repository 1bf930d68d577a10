"""The `engine` column of bench/serve.py: the same workload sent straight to vLLM's `AsyncLLM`, in-process.

One subprocess per round (so its engine is stopped like a server's and never overlaps another):

1. the engine is built exactly as `interleave-serve` builds it (`server.app.load_vllm_model` on the
   settings parsed from the very flags the `ours` server gets, `bench._servers.ours_flags`);
2. BEFORE the clock starts, every request body of the round (warm-up included) goes through our
   own request pipeline (`ChatService.prepare`: validation, media fetch + decode + resize, prompt
   token ids, media keys), so the measured part has no HTTP, no JSON and no media work;
3. the warm-up, then the measured load: `AsyncLLM.generate(TokensPrompt(prompt_token_ids,
   multi_modal_data, multi_modal_uuids), SamplingParams, request_id)` with the sampling parameters
   our server would pass (`VLLMEngine._sampling_params`), the same concurrency as the HTTP load;
   TTFT = the first output with non-empty text, as the HTTP client counts the first content delta;
4. CPU seconds of this process (`api`) and of its engine processes during the load.

    python bench/_engine.py --spec SPEC.json --out OUT.json    (bench/serve.py writes SPEC)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
import uuid
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _cpu_seconds() -> dict[str, float]:
    """CPU seconds (user + system) of this process (`api`) and its descendants by process name."""
    import os

    from bench._servers import process_tree_cpu_seconds

    return process_tree_cpu_seconds(os.getpid())


def run_engine_round(
    args: argparse.Namespace, opts, log_dir: Path, tag: str, timeout: float = 3600.0
) -> dict:
    """Run one engine round in a subprocess; returns its result dict (results, wall_s, start_s, cpu_s).

    Raises:
        RuntimeError: the subprocess failed (with the tail of its log).
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    spec = log_dir / f"engine-{tag}.spec.json"
    out = log_dir / f"engine-{tag}.out.json"
    log = log_dir / f"engine-{tag}.log"
    spec.write_text(
        json.dumps(
            {
                "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                "opts": asdict(opts),
            }
        )
    )
    out.unlink(missing_ok=True)
    with open(log, "w") as fh:
        proc = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--spec", str(spec), "--out", str(out)],
            stdout=fh,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            start_new_session=True,
        )
    if proc.returncode != 0 or not out.exists():
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
        raise RuntimeError(f"engine round failed (exit {proc.returncode}):\n{tail}")
    return json.loads(out.read_text())


async def _run(spec: dict) -> dict:
    from prometheus_client import CollectorRegistry
    from vllm.inputs import TokensPrompt

    from bench._servers import EngineOptions, ours_flags
    from bench.serve import TYPES, build_chat, build_workload, chat_warmup_workload, plan
    from server.app import default_media_loader, load_vllm_model, prompt_limits
    from server.chat import ChatService
    from server.cli import parse_settings
    from server.metrics import ServerMetrics
    from server.schemas import parse_chat_request

    args = argparse.Namespace(**spec["args"])
    args.chat_video_size = tuple(args.chat_video_size)
    opts = EngineOptions(**spec["opts"])
    settings = parse_settings(["--host", "127.0.0.1", "--port", "0", *ours_flags(opts)])
    t0 = time.perf_counter()
    engine, builder = load_vllm_model(settings)
    start_s = time.perf_counter() - t0
    try:
        loader = default_media_loader(settings, builder.image_size)  # as the server's startup does
        service = ChatService(
            engine,
            loader,
            builder,
            prompt_limits(settings),
            ServerMetrics(CollectorRegistry()),
            default_max_tokens=settings.default_max_tokens,
        )

        async def prepare(body: dict):
            return await service.prepare(parse_chat_request(body), time.perf_counter())

        llm = engine.llm

        async def one(prepared, kind: str) -> dict:
            prompt = {"prompt_token_ids": list(prepared.prompt.prompt_token_ids)}
            if prepared.images:
                prompt["multi_modal_data"] = {"image": list(prepared.images)}
                if getattr(prepared, "media_uuids", None):
                    prompt["multi_modal_uuids"] = {"image": list(prepared.media_uuids)}
            params = engine._sampling_params(prepared.options)
            t = time.perf_counter()
            ttft = None
            tokens = 0
            prompt_tokens = 0
            try:
                async for out in llm.generate(TokensPrompt(**prompt), params, f"bench-{uuid.uuid4().hex}"):
                    if ttft is None and any(c.text for c in out.outputs):
                        ttft = time.perf_counter() - t
                    tokens += sum(len(c.token_ids) for c in out.outputs)
                    prompt_tokens = len(out.prompt_token_ids or ())
            except Exception as exc:  # noqa: BLE001 - reported as a failed request
                return {
                    "kind": kind,
                    "ok": False,
                    "e2e": time.perf_counter() - t,
                    "error": f"{type(exc).__name__}: {exc}",
                }
            e2e = time.perf_counter() - t
            return {
                "kind": kind,
                "ok": True,
                "e2e": e2e,
                "ttft": ttft if ttft is not None else e2e,
                "prompt_tokens": prompt_tokens,
                "completion_tokens": tokens,
            }

        if args.workload == "chat":
            chat = build_chat(args)
            warm_chat = chat_warmup_workload(build_workload(args), args)
            warm = [await prepare(warm_chat.body(0, t)) for t in range(1, warm_chat.turns + 1)]
            convs = [
                [await prepare(chat.body(c, t)) for t in range(1, chat.turns + 1)]
                for c in range(len(chat.conversations))
            ]
            for p in warm:
                await one(p, "warm")
            results: list[dict] = []
            pending = list(range(len(convs)))

            async def worker() -> None:
                while pending:
                    conv = convs[pending.pop(0)]
                    for turn, p in enumerate(conv, 1):
                        results.append(await one(p, f"turn{turn}"))
        else:
            workload = build_workload(args)
            order = plan(args.requests, TYPES)
            warm = [await prepare(workload.body(kind, 100_000 + i)) for i, kind in enumerate(TYPES)]
            bodies = [(kind, await prepare(workload.body(kind, i))) for kind, i in order]
            for p in warm:
                await one(p, "warm")
            results = [None] * len(bodies)  # type: ignore[list-item]
            next_index = 0

            async def worker() -> None:
                nonlocal next_index
                while next_index < len(bodies):
                    i = next_index
                    next_index += 1
                    kind, p = bodies[i]
                    results[i] = await one(p, kind)

        cpu0 = _cpu_seconds()
        t = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
        wall = time.perf_counter() - t
        cpu1 = _cpu_seconds()
        await loader.aclose()
    finally:
        engine.shutdown()
    return {
        "results": [r for r in results if r is not None],
        "wall_s": wall,
        "start_s": start_s,
        "cpu_s": {k: round(cpu1[k] - cpu0.get(k, 0.0), 2) for k in cpu1},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--spec", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    result = asyncio.run(_run(json.loads(a.spec.read_text())))
    a.out.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
