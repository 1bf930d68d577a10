"""The request log line, request ids on log lines, and the text / JSON formats (server.logs)."""

from __future__ import annotations

import asyncio
import json
import logging
import threading

from server_fakes import FakeEngine, make_builder, png_data_url, running_app

from server.logs import REQUEST_ID, JsonFormatter, RequestIdFilter, TextFormatter

URL = "/v1/chat/completions"


def request_lines(caplog) -> list[dict]:
    return [r.request_fields for r in caplog.records if r.name == "server.requests"]


async def test_one_line_per_generation_request_with_tokens_media_and_timing(caplog):
    caplog.set_level(logging.INFO, logger="server.requests")
    content = [{"type": "image_url", "image_url": {"url": png_data_url()}}, {"type": "text", "text": "hi"}]
    async with running_app() as h:
        r = await h.client.post(
            URL,
            json={"messages": [{"role": "user", "content": content}], "max_tokens": 4, "stream": True},
            headers={"x-request-id": "req-log-1"},
        )
        assert r.status_code == 200, r.text
        await h.client.get("/health")  # not a generation request: no line
    (line,) = request_lines(caplog)
    assert line["request_id"] == "req-log-1"
    assert (line["method"], line["path"], line["status"]) == ("POST", URL, 200)
    assert line["images"] == 1 and line["videos"] == line["frames"] == line["scene_views"] == 0
    assert line["visual_tokens"] == 729 and line["prompt_tokens"] > 729
    assert line["completion_tokens"] == 4
    assert 0 <= line["first_token_seconds"] <= line["duration_seconds"]


async def test_failed_request_line_has_status_and_error_code(caplog):
    caplog.set_level(logging.INFO, logger="server.requests")
    async with running_app() as h:
        r = await h.client.post(URL, json={"messages": [{"role": "user", "content": "x"}], "model": "nope"})
        assert r.status_code == 404
    (line,) = request_lines(caplog)
    assert line["status"] == 404 and line["error"] == "model_not_found"
    assert line["request_id"] == r.headers["x-request-id"]
    assert line["completion_tokens"] == 0 and line["first_token_seconds"] is None


def record(msg: str = "client disconnected: aborting chatcmpl-1") -> logging.LogRecord:
    rec = logging.LogRecord("server.chat", logging.INFO, __file__, 1, msg, None, None)
    RequestIdFilter().filter(rec)
    return rec


def test_lines_logged_inside_a_request_name_it():
    token = REQUEST_ID.set("abc123")
    try:
        rec = record()
    finally:
        REQUEST_ID.reset(token)
    assert (
        TextFormatter()
        .format(rec)
        .endswith("server.chat [request abc123]: client disconnected: aborting chatcmpl-1")
    )
    entry = json.loads(JsonFormatter().format(rec))
    assert entry["request_id"] == "abc123" and entry["level"] == "INFO" and entry["logger"] == "server.chat"
    assert entry["message"] == "client disconnected: aborting chatcmpl-1"


def test_lines_outside_requests_have_no_request_id():
    rec = record("ready")
    assert TextFormatter().format(rec).endswith("server.chat: ready")
    assert "request_id" not in json.loads(JsonFormatter().format(rec))


async def test_a_progress_line_while_the_engine_loads(caplog, monkeypatch):
    import server.app

    monkeypatch.setattr(server.app, "LOAD_PROGRESS_INTERVAL_SECONDS", 0.01)
    caplog.set_level(logging.INFO, logger="server.app")
    release = threading.Event()

    def slow_loader(settings):
        release.wait(30)
        return FakeEngine(), make_builder()

    def progress_lines() -> list[str]:
        return [
            r.getMessage() for r in caplog.records if r.getMessage().startswith("still loading the engine (")
        ]

    try:
        async with running_app(loader=slow_loader, wait_ready=False) as h:
            deadline = asyncio.get_running_loop().time() + 10
            while len(progress_lines()) < 2 and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.01)
            assert len(progress_lines()) >= 2
            release.set()
            while (
                await h.client.get("/ready")
            ).status_code != 200 and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.01)
            seen = len(progress_lines())
            assert (await h.client.get("/ready")).status_code == 200
            await asyncio.sleep(0.05)  # a few intervals: no progress line once loaded
            assert len(progress_lines()) == seen
    finally:
        release.set()
