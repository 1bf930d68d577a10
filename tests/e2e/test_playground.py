"""The playground page in a real browser (Playwright driving Debian's Chromium, headless) against the
shared live server on the tiny model.

One scenario, because every step builds on the conversation of the step before: attach two images and
a short video (file pickers) and two scene views (drag and drop), reorder, send, watch the answer
stream and the usage line give the right visual token count; a corrupt video gets its error next to
it; a second turn sends the whole conversation; a context overflow is shown next to "Max tokens";
every control has an accessible name, is reachable with Tab and shows a focus ring. Screenshots go to
the test's ``tmp_path``.

Chromium comes from Debian (``apt-get install chromium``, done here when it is missing and we are
root), never from a browser vendor's download (no ``playwright install``).
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from harness.media import encode_video, png

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TOKENS_PER_IMAGE = 729  # (384 / 14)^2 SigLIP patches per image, frame or view
NUM_FRAMES = 4
STREAM_TIMEOUT_MS = 180_000  # a prefill of ~6,000 tokens on 2 shared CPU cores, with room
INTERACTIVE_ROLES = {
    "button",
    "textbox",
    "combobox",
    "spinbutton",
    "checkbox",
    "radio",
    "slider",
    "link",
    "listbox",
    "searchbox",
    "menuitem",
    "switch",
    "tab",
    "option",
}


@pytest.fixture(scope="session")
def chromium_executable() -> Path:
    """Debian's Chromium, installed with apt-get when missing (CI machines run as root on Debian)."""
    if not CHROMIUM.exists():
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium)")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        lock = ["-o", "DPkg::Lock::Timeout=600"]
        subprocess.run(["apt-get", *lock, "update"], check=True, env=env, timeout=900)
        subprocess.run(
            ["apt-get", *lock, "install", "-y", "--no-install-recommends", "chromium"],
            check=True,
            env=env,
            timeout=1800,
        )
    assert CHROMIUM.exists(), f"apt-get did not install {CHROMIUM}"
    return CHROMIUM


@pytest.fixture(scope="module")
def browser(chromium_executable) -> Browser:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(chromium_executable), args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


def _media_files(folder: Path) -> dict[str, Path]:
    files = {
        "red.png": png(64, 48, (200, 30, 30)),
        "blue.png": png(48, 64, (30, 60, 200)),
        "clip.mp4": encode_video(16, fps=8, size=(96, 64)),
        "front.png": png(40, 40, (30, 160, 60)),
        "back.png": png(40, 40, (160, 160, 30)),
        # not a video at all: no container the server (or the browser) can open
        "broken.mp4": bytes(range(256)) * 40,
    }
    out = {}
    for name, raw in files.items():
        (folder / name).write_bytes(raw)
        out[name] = folder / name
    return out


def _drop_files(page: Page, selector: str, files: list[Path], mime: str) -> None:
    """Drag-and-drop ``files`` onto ``selector`` the way a person does: a DataTransfer with File objects."""
    payload = [
        {"name": f.name, "b64": base64.b64encode(f.read_bytes()).decode(), "mime": mime} for f in files
    ]
    transfer = page.evaluate_handle(
        """(files) => {
            const dt = new DataTransfer();
            for (const f of files) {
                const bytes = Uint8Array.from(atob(f.b64), (c) => c.charCodeAt(0));
                dt.items.add(new File([bytes], f.name, { type: f.mime }));
            }
            return dt;
        }""",
        payload,
    )
    page.dispatch_event(selector, "dragover", {"dataTransfer": transfer})
    page.dispatch_event(selector, "drop", {"dataTransfer": transfer})


def _part_titles(page: Page) -> list[str]:
    return page.locator("#parts .part .title").all_inner_texts()


def _send_and_capture(page: Page, headers: dict | None = None) -> dict:
    """Click Send; return the JSON body of the chat request the page made (its headers into
    ``headers`` when given)."""
    with page.expect_request(lambda r: r.url.endswith("/v1/chat/completions") and r.method == "POST") as req:
        page.get_by_role("button", name="Send", exact=True).click()
    if headers is not None:
        headers.update(req.value.all_headers())
    return json.loads(req.value.post_data)


def _watch_answer_updates(page: Page) -> None:
    """Count the updates of each assistant answer as they happen (streaming = several updates)."""
    page.evaluate(
        """() => {
            window.__answerUpdates = [];
            new MutationObserver((records) => {
                for (const r of records) {
                    const t = r.target.nodeType === 3 ? r.target.parentElement : r.target;
                    if (t && t.matches && t.matches('.turn.assistant > .text')) {
                        window.__answerUpdates.push(t.textContent.length);
                    }
                }
            }).observe(document.getElementById('conversation'),
                       { subtree: true, childList: true, characterData: true });
        }"""
    )


def _wait_for_usage(page: Page, turn: int):
    usage = page.locator(".turn.assistant .usage").nth(turn)
    expect(usage).to_contain_text("Visual tokens", timeout=STREAM_TIMEOUT_MS)
    expect(page.get_by_role("button", name="Send", exact=True)).to_be_enabled()
    return usage


def _unnamed_controls(page: Page) -> tuple[list[dict], int]:
    """Interactive nodes of Chromium's own accessibility tree without an accessible name, and how many
    interactive nodes it has."""
    cdp = page.context.new_cdp_session(page)
    nodes = cdp.send("Accessibility.getFullAXTree")["nodes"]
    cdp.detach()
    missing = []
    for node in nodes:
        role = (node.get("role") or {}).get("value")
        if node.get("ignored") or role not in INTERACTIVE_ROLES:
            continue
        if not str((node.get("name") or {}).get("value") or "").strip():
            missing.append({"role": role, "node": node.get("backendDOMNodeId")})
    return missing, sum(
        1 for n in nodes if (n.get("role") or {}).get("value") in INTERACTIVE_ROLES and not n.get("ignored")
    )


def _tab_order(page: Page, last_id: str, max_presses: int = 60) -> list[dict]:
    """Press Tab from the top of the page until ``last_id`` has the focus; the focused element and its
    outline after each press."""
    page.locator("h1").click()  # start from the top of the page
    seen: list[dict] = []
    while not seen or seen[-1]["id"] != last_id:
        assert len(seen) < max_presses, f"Tab never reached #{last_id}: {seen}"
        page.keyboard.press("Tab")
        seen.append(
            page.evaluate(
                """() => {
                    const e = document.activeElement;
                    const s = getComputedStyle(e);
                    return { id: e.id || null, tag: e.tagName, label: e.getAttribute('aria-label'),
                             outline: s.outlineStyle, width: parseFloat(s.outlineWidth) };
                }"""
            )
        )
    return seen


def test_playground_in_a_real_browser(live_server, browser, tmp_path):
    files = _media_files(tmp_path)
    shots = tmp_path / "screenshots"
    shots.mkdir()
    context = browser.new_context(viewport={"width": 1360, "height": 1000})
    page = context.new_page()
    console_errors: list[str] = []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: console_errors.append(str(e)))
    outside = []
    page.on(
        "request",
        lambda r: (
            outside.append(r.url) if not r.url.startswith((live_server.base_url, "data:", "blob:")) else None
        ),
    )
    try:
        # --- the page: / redirects, the model name shows -----------------------------------------
        page.goto(live_server.base_url + "/")
        assert page.url == live_server.base_url + "/playground"
        expect(page.locator("body")).to_have_attribute("data-ready", "true")
        model = page.evaluate("() => fetch('/v1/models').then(r => r.json()).then(b => b.data[0].id)")
        expect(page.locator("#model-name")).to_have_text(model)

        # --- attach: two images and a video with the pickers, two scene views by drag and drop -----
        page.set_input_files("#image-input", [files["red.png"], files["blue.png"]])
        page.set_input_files("#video-input", files["clip.mp4"])
        _drop_files(page, "#drop-scene", [files["front.png"], files["back.png"]], "image/png")
        assert _part_titles(page) == [
            "Image 1: red.png",
            "Image 2: blue.png",
            "Video 3: clip.mp4",
            "Scene 4: 2 views",
        ]
        # thumbnails: the images, a poster frame drawn from the video, every scene view
        expect(page.locator('[data-kind="image"] img')).to_have_count(2)
        expect(page.locator('[data-kind="video"] img')).to_have_attribute(
            "src", re.compile(r"^data:image/jpeg")
        )
        expect(page.locator('[data-kind="scene"] img')).to_have_count(2)
        page.get_by_label("Label of view 1 (front.png) of scene 4, optional").fill("front")
        page.get_by_label("Label of view 2 (back.png) of scene 4, optional").fill("back")

        # reorder with the keyboard and back with the mouse
        page.get_by_role("button", name="Move up Image 2: blue.png").focus()
        page.keyboard.press("Enter")
        assert _part_titles(page)[:2] == ["Image 1: blue.png", "Image 2: red.png"]
        page.get_by_role("button", name="Move down Image 1: blue.png").click()
        assert _part_titles(page)[:2] == ["Image 1: red.png", "Image 2: blue.png"]

        page.get_by_label("Frames per video").fill(str(NUM_FRAMES))
        page.get_by_label("Max tokens").fill("12")
        page.get_by_label("Temperature").fill("0")
        page.get_by_label("Image placement").select_option("interleaved")
        page.get_by_label("Message", exact=True).fill("What changes from one picture to the next?")
        page.screenshot(path=str(shots / "1-attached.png"), full_page=True)

        # --- turn 1: streamed answer, then the usage line ------------------------------------------
        _watch_answer_updates(page)
        body = _send_and_capture(page)
        assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
        assert (
            body["max_tokens"] == 12 and body["temperature"] == 0 and body["image_placement"] == "interleaved"
        )
        assert len(body["messages"]) == 1
        content = body["messages"][0]["content"]
        assert [p["type"] for p in content] == ["image_url", "image_url", "video_url", "scene_views", "text"]
        assert content[0]["image_url"]["url"].startswith("data:image/png;base64,")
        assert content[2]["video_url"]["num_frames"] == NUM_FRAMES
        assert content[2]["video_url"]["url"].startswith("data:video/mp4;base64,")
        assert content[3]["scene_views"]["labels"] == ["front", "back"]
        usage = _wait_for_usage(page, 0)
        answer = page.locator(".turn.assistant > .text").nth(0)
        expect(answer).not_to_have_text("")
        updates = page.evaluate("() => window.__answerUpdates")
        assert len(set(updates)) >= 2, f"the answer did not stream in (updates: {updates})"
        visual = (2 + NUM_FRAMES + 2) * TOKENS_PER_IMAGE
        assert usage.get_attribute("data-source") == "server"  # usage.prompt_tokens_details, not a guess
        assert usage.get_attribute("data-visual-tokens") == str(visual)
        usage_text = usage.inner_text()
        assert f"Visual tokens {visual:,}" in usage_text
        assert int(usage.get_attribute("data-text-tokens")) > 0
        assert 1 <= int(usage.get_attribute("data-completion-tokens")) <= 12
        assert re.search(r"time to first token \d+\.\d\d s", usage_text), usage_text
        if int(usage.get_attribute("data-completion-tokens")) > 1:
            assert re.search(r"\d+\.\d tokens/s", usage_text), usage_text
        expect(page.locator("#parts .part")).to_have_count(0)  # sent parts leave the composer
        page.screenshot(path=str(shots / "2-first-answer.png"), full_page=True)

        # --- a corrupt video: the server's error sits next to that part -------------------------------
        page.set_input_files("#video-input", files["broken.mp4"])
        expect(page.locator('[data-kind="video"] .noposter')).to_have_text("no preview")
        page.get_by_label("Message", exact=True).fill("And what happens in this clip?")
        body = _send_and_capture(page)
        assert len(body["messages"]) == 3
        broken = page.locator('[data-kind="video"]')
        error = broken.locator(".error")
        expect(error).to_be_visible(timeout=STREAM_TIMEOUT_MS)
        expect(error).to_contain_text("messages[2].content[0]")  # the error's param, as the server named it
        expect(error).not_to_contain_text("base64")  # the data: URL the server echoes is left out
        expect(broken).to_have_class(re.compile(r"\binvalid\b"))
        expect(page.locator("#form-error")).to_contain_text("Video 1: broken.mp4")
        expect(page.locator(".turn")).to_have_count(2)  # the failed turn did not join the conversation
        page.screenshot(path=str(shots / "3-corrupt-video.png"), full_page=True)

        # --- turn 2: remove the broken part (keyboard), send; the whole conversation goes out -----
        page.get_by_role("button", name="Remove Video 1: broken.mp4").focus()
        page.keyboard.press("Enter")
        expect(page.locator("#parts .part")).to_have_count(0)
        page.get_by_label("Message", exact=True).fill("Say it in other words.")
        # the API key goes out as a bearer token (this server has no --api-key, so it is not checked)
        # and is kept nowhere but in the page's memory
        page.get_by_label("API key").fill("sk-playground-test")
        sent_headers: dict = {}
        body = _send_and_capture(page, sent_headers)
        assert sent_headers.get("authorization") == "Bearer sk-playground-test"
        stored = page.evaluate("() => [localStorage.length, sessionStorage.length, document.cookie]")
        assert stored == [0, 0, ""]
        assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
        assert body["messages"][0]["content"] == content
        assert body["messages"][1]["content"] == answer.inner_text()
        assert body["messages"][2]["content"] == [{"type": "text", "text": "Say it in other words."}]
        usage2 = _wait_for_usage(page, 1)
        assert usage2.get_attribute("data-visual-tokens") == str(visual)  # the first turn's media again
        assert int(usage2.get_attribute("data-text-tokens")) > int(usage.get_attribute("data-text-tokens"))
        expect(page.locator(".turn.assistant > .text").nth(1)).not_to_have_text("")
        expect(page.locator(".turn")).to_have_count(4)
        page.screenshot(path=str(shots / "4-second-turn.png"), full_page=True)

        # --- the context exceeded: shown next to "Max tokens" -----------------------------------------
        page.get_by_label("Max tokens").fill("100000")
        page.get_by_label("Message", exact=True).fill("One more, please.")
        _send_and_capture(page)
        expect(page.locator("#max-tokens-error")).to_contain_text("context", timeout=STREAM_TIMEOUT_MS)
        expect(page.get_by_label("Max tokens")).to_have_attribute("aria-invalid", "true")
        expect(page.locator(".turn")).to_have_count(4)
        page.get_by_label("Max tokens").fill("12")

        # --- accessibility: every control named, reachable with Tab, with a visible focus ring -----
        page.set_input_files("#image-input", files["red.png"])  # part buttons and a text part too
        page.get_by_role("button", name="Add text part").click()
        missing, interactive = _unnamed_controls(page)
        assert interactive >= 15
        assert missing == [], f"controls without an accessible name: {missing}"
        order = _tab_order(page, "send")
        reached = {e["id"] or e["label"] for e in order}
        for control in [
            "api-key",
            "new-chat",
            "add-images",
            "add-videos",
            "add-scene",
            "add-text",
            "message",
            "image-placement",
            "num-frames",
            "max-tokens",
            "temperature",
            "send",
            "Remove Image 1: red.png",
            "Text part 2",
        ]:
            assert control in reached, f"{control} is not reachable with Tab (order: {order})"
        no_ring = [e for e in order if e["outline"] == "none" or e["width"] < 2]
        assert no_ring == [], f"focused without a visible focus ring: {no_ring}"
        page.screenshot(path=str(shots / "5-focus.png"), full_page=True)

        # --- new chat empties the page --------------------------------------------------------------
        page.get_by_role("button", name="New chat").click()
        expect(page.locator(".turn")).to_have_count(0)
        expect(page.locator("#parts .part")).to_have_count(0)
        expect(page.locator("#conversation-empty")).to_be_visible()

        assert outside == [], f"the page requested URLs outside the server: {outside}"
        # the only console errors are the browser's own log lines for the two refused requests
        assert all("status of 400" in e for e in console_errors), console_errors
    finally:
        page.screenshot(path=str(shots / "last.png"), full_page=True)
        context.close()
