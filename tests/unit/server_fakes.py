"""In-process fakes for the HTTP layer's unit tests: engine, tokenizer, media loader, app factory.

Fakes are for UNIT tests only; the e2e tests run the real vLLM engine.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
from PIL import Image
from prometheus_client import CollectorRegistry

from server.app import create_app
from server.generation import (
    CompletionDelta,
    EngineFailure,
    EngineRequestError,
    EngineStep,
    SamplingOptions,
    TokenLogprobInfo,
)
from server.metrics import ServerMetrics
from server.prompt import PromptBuilder
from server.settings import ServerSettings

IM_START, IM_END, IMAGE = 1001, 1002, 1003
SPECIALS = {"<|im_start|>": IM_START, "<|im_end|>": IM_END, "<image>": IMAGE}
TOKENS_PER_IMAGE = 729


class ByteTokenizer:
    """One token per UTF-8 byte (id = byte + 10); with ``split_special_tokens=False`` the ChatML
    specials and ``<image>`` are recognized, as a real tokenizer does."""

    def encode(
        self, text: str, add_special_tokens: bool = False, split_special_tokens: bool = False
    ) -> list[int]:
        if split_special_tokens:
            return [b + 10 for b in text.encode()]
        ids: list[int] = []
        pattern = "(" + "|".join(re.escape(s) for s in SPECIALS) + ")"
        for piece in re.split(pattern, text):
            if piece in SPECIALS:
                ids.append(SPECIALS[piece])
            elif piece:
                ids += [b + 10 for b in piece.encode()]
        return ids

    def get_vocab(self) -> dict[str, int]:
        vocab = {chr(b): b + 10 for b in range(256)}
        vocab.update(SPECIALS)
        return vocab

    def decode(self, ids: Sequence[int]) -> str:
        inv = {v: k for k, v in SPECIALS.items()}
        out = b""
        for i in ids:
            out += inv[i].encode() if i in inv else bytes([i - 10])
        return out.decode(errors="replace")


def make_builder(system_prompt: str = "You are a helpful assistant.") -> PromptBuilder:
    return PromptBuilder(
        ByteTokenizer(),
        image_token_id=IMAGE,
        im_start_id=IM_START,
        im_end_id=IM_END,
        tokens_per_image=TOKENS_PER_IMAGE,
        default_system_prompt=system_prompt,
    )


@dataclass
class FakeEngine:
    """Deterministic engine: choice ``i`` emits words ``w<k>`` derived from the prompt, the seed and i.

    Attributes:
        eos_after: a choice stops ("stop") after this many tokens, unless max_tokens comes first.
        token_delay: seconds between steps (lets tests disconnect mid-stream).
        fail_after_steps: raise EngineFailure after this many steps (None: never).
        reject_with: raise EngineRequestError with this message at once.
        calls / aborted / active: what happened.
    """

    max_model_len: int = 8192
    served_model_name: str = "fake-model"
    model_path: Path = Path("/nonexistent/fake")
    eos_after: int = 1000
    token_delay: float = 0.0
    fail_after_steps: int | None = None
    reject_with: str | None = None
    dead: bool = False
    calls: list[dict] = field(default_factory=list)
    aborted: list[str] = field(default_factory=list)
    active: set[str] = field(default_factory=set)
    shut_down: bool = False

    @property
    def is_dead(self) -> bool:
        return self.dead

    def word(self, prompt: Sequence[int], seed: int | None, choice: int, k: int) -> str:
        h = hashlib.sha256(f"{list(prompt)}|{seed}|{choice}|{k}".encode()).hexdigest()
        return f"w{int(h[:4], 16) % 97} "

    async def generate(
        self,
        request_id: str,
        prompt_token_ids: Sequence[int],
        images: Sequence[Image.Image],
        options: SamplingOptions,
        *,
        media_uuids: Sequence[str | None] | None = None,
    ) -> AsyncIterator[EngineStep]:
        self.calls.append(
            {
                "request_id": request_id,
                "prompt_token_ids": list(prompt_token_ids),
                "images": list(images),
                "options": options,
                "media_uuids": None if media_uuids is None else list(media_uuids),
            }
        )
        if self.reject_with:
            raise EngineRequestError(self.reject_with)
        assert list(prompt_token_ids).count(IMAGE) == len(images)
        prompt_tokens = len(prompt_token_ids) + (TOKENS_PER_IMAGE - 1) * len(images)
        seed = options.seed if options.temperature > 0 else 0
        texts = [""] * options.n
        done = [False] * options.n
        counts = [0] * options.n
        self.active.add(request_id)
        try:
            step = 0
            while not all(done):
                if self.fail_after_steps is not None and step >= self.fail_after_steps:
                    raise EngineFailure("fake engine failure")
                if self.token_delay:
                    await asyncio.sleep(self.token_delay)
                else:
                    await asyncio.sleep(0)
                deltas = []
                for i in range(options.n):
                    if done[i]:
                        continue
                    w = self.word(prompt_token_ids, seed, i, counts[i])
                    counts[i] += 1
                    finish = None
                    text = w
                    texts[i] += w
                    for s in options.stop:
                        pos = texts[i].find(s)
                        if pos >= 0:
                            keep = len(texts[i]) - len(w)
                            text = texts[i][keep:pos] if pos >= keep else ""
                            finish = "stop"
                    if finish is None and counts[i] >= self.eos_after:
                        finish = "stop"
                    if finish is None and counts[i] >= options.max_tokens:
                        finish = "length"
                    lp = None
                    if options.logprobs is not None:
                        top = tuple((f"alt{j}", -1.0 - j) for j in range(options.logprobs))
                        lp = (TokenLogprobInfo(token=w, logprob=-0.5, top=top),)
                    deltas.append(
                        CompletionDelta(index=i, text=text, num_tokens=1, logprobs=lp, finish_reason=finish)
                    )
                    if finish:
                        done[i] = True
                step += 1
                yield EngineStep(prompt_tokens=prompt_tokens, deltas=deltas, finished=all(done))
        finally:
            self.active.discard(request_id)

    async def abort(self, request_id: str) -> None:
        self.aborted.append(request_id)

    def shutdown(self) -> None:
        self.shut_down = True


class FakeMediaError(ValueError):
    """Stands in for server.media.MediaError (a ValueError with a user-facing message)."""


class FakeMediaLoader:
    """Decodes ``data:image/...`` URLs with PIL; videos are ``fake-video://<frames>`` (frames of
    16x16), ``fake-video://bad`` fails. Anything else fails like the real loader would."""

    def __init__(self) -> None:
        self.closed = False
        self.loaded: list[str] = []

    async def load_image(self, url: str) -> Image.Image:
        self.loaded.append(url)
        m = re.match(r"^data:image/[a-z]+;base64,(.*)$", url, re.S)
        if not m:
            raise FakeMediaError(f"unsupported image URL {url[:40]!r}")
        try:
            raw = base64.b64decode(m.group(1) + "==")
            img = Image.open(io.BytesIO(raw))
            img.load()
        except Exception as exc:  # noqa: BLE001 - any Pillow failure is a bad image here
            raise FakeMediaError(f"not a decodable image: {exc}") from None
        return img.convert("RGB")

    async def load_video(self, url: str, *, num_frames: int = 16, fps: float | None = None):
        self.loaded.append(url)
        m = re.match(r"^fake-video://(\d+)$", url)
        if not m:
            raise FakeMediaError("not a decodable video")
        n = min(int(m.group(1)), num_frames)

        @dataclass
        class Frames:
            frames: np.ndarray
            timestamps: list[float]
            duration: float

        return Frames(np.zeros((n, 16, 16, 3), np.uint8), [float(i) for i in range(n)], float(n))

    async def aclose(self) -> None:
        self.closed = True


def png_data_url(w: int = 8, h: int = 8, color=(255, 0, 0)) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), color).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


@dataclass
class Harness:
    app: object
    engine: FakeEngine
    media: FakeMediaLoader
    client: httpx.AsyncClient
    metrics: ServerMetrics


@asynccontextmanager
async def running_app(
    settings: ServerSettings | None = None,
    engine: FakeEngine | None = None,
    *,
    wait_ready: bool = True,
    loader=None,
):
    """Start the real app (lifespan included) on fakes; yield a :class:`Harness` with an httpx client."""
    settings = settings or ServerSettings()
    engine = engine or FakeEngine()
    media = FakeMediaLoader()
    metrics = ServerMetrics(CollectorRegistry())
    builder = make_builder(settings.default_system_prompt)
    app = create_app(
        settings,
        model_loader=loader or (lambda s: (engine, builder)),
        media_loader_factory=lambda settings, image_size: media,
        metrics=metrics,
    )
    async with app.router.lifespan_context(app):
        if wait_ready:
            for _ in range(500):
                if app.state.interleave.phase != "loading":
                    break
                await asyncio.sleep(0.01)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield Harness(app, engine, media, client, metrics)


def sample_value(metrics: ServerMetrics, name: str, labels: dict[str, str] | None = None) -> float | None:
    return metrics.registry.get_sample_value(name, labels or {})
