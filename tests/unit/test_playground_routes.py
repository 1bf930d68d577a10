"""The playground's routes on the real app (fake engine): page, static files, redirect, the setting."""

from __future__ import annotations

import re
from importlib import resources

from server_fakes import running_app

from server.settings import ServerSettings


def _static_names() -> list[str]:
    return sorted(p.name for p in resources.files("server.playground").joinpath("static").iterdir())


async def test_root_redirects_to_the_page_and_the_page_is_served():
    async with running_app() as h:
        root = await h.client.get("/")
        assert root.status_code == 307
        assert root.headers["location"] == "/playground"
        page = await h.client.get("/playground")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        csp = page.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "connect-src 'self'" in csp
        assert "<title>LLaVA-NeXT-Interleave playground</title>" in page.text


async def test_every_asset_the_page_names_is_served_from_the_package():
    async with running_app() as h:
        html = (await h.client.get("/playground")).text
        assets = [u for u in re.findall(r'(?:src|href)="([^"]+)"', html) if not u.startswith("data:")]
        assert sorted(assets) == ["/playground/static/app.js", "/playground/static/style.css"]
        for url, kind in [
            ("/playground/static/app.js", "text/javascript"),
            ("/playground/static/style.css", "text/css"),
        ]:
            resp = await h.client.get(url)
            assert resp.status_code == 200, url
            assert resp.headers["content-type"].startswith(kind)
            assert resp.headers["x-content-type-options"] == "nosniff"
        assert (await h.client.get("/playground/static/nope.js")).status_code == 404
        assert (await h.client.get("/playground/static/..%2f__init__.py")).status_code == 404


def test_static_files_load_nothing_from_elsewhere_and_keep_no_key():
    assert _static_names() == ["app.js", "index.html", "style.css"]
    for name in _static_names():
        text = resources.files("server.playground").joinpath("static", name).read_text()
        assert not re.search(r"https?://", text), f"{name} names an external URL"
        assert "@import" not in text and "@font-face" not in text, name
    js = resources.files("server.playground").joinpath("static", "app.js").read_text()
    for storage in ("localStorage", "sessionStorage", "document.cookie", "indexedDB"):
        assert storage not in js, f"the API key must stay in memory: app.js uses {storage}"


async def test_no_playground_setting_turns_the_routes_off():
    async with running_app(ServerSettings(playground=False)) as h:
        assert (await h.client.get("/playground")).status_code == 404
        assert (await h.client.get("/")).status_code == 404
        assert (await h.client.get("/health")).status_code == 200


def test_playground_flag_parses_both_ways():
    from server.cli import parse_settings

    assert parse_settings([]).playground is True
    assert parse_settings(["--no-playground"]).playground is False
