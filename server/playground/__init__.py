"""The playground: a static page at ``GET /playground`` that talks to ``/v1/chat/completions``.

HTML, CSS and JavaScript ship in ``server/playground/static/`` (package data; no build step, no CDN,
no external fonts). The page streams answers (``fetch`` + a ``ReadableStream`` SSE parser), keeps the
conversation in memory and sends it whole each turn. :func:`create_router` gives the routes;
``server.app.create_app`` includes them when ``--playground`` is on (the default).

Routes:
    ``GET /``: 307 redirect to ``/playground``.
    ``GET /playground``: the page (``index.html``).
    ``GET /playground/static/{name}``: ``app.js`` and ``style.css`` (404 for any other name).

Every response carries a Content-Security-Policy that allows only this origin (plus ``blob:`` and
``data:`` images and media for the page's own thumbnails), so nothing outside the server can load.
"""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import RedirectResponse, Response

from server.errors import APIError

PAGE_PATH = "/playground"

_CONTENT_TYPES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' blob: data:; media-src 'self' blob: data:; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
"""Only this origin: no CDN, fonts or third-party requests can load even by mistake."""


def _read(name: str) -> bytes:
    """Bytes of a shipped static file. Raises FileNotFoundError."""
    return resources.files(__package__).joinpath("static", name).read_bytes()


def _static(name: str) -> Response:
    if name not in _CONTENT_TYPES:
        raise APIError(404, f"No playground file named '{name}'.", type="not_found_error")
    return Response(
        _read(name),
        media_type=_CONTENT_TYPES[name],
        headers={
            "Content-Security-Policy": CONTENT_SECURITY_POLICY,
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-cache",
        },
    )


def create_router() -> APIRouter:
    """The playground's routes (see the module docstring); not in the OpenAPI schema."""
    router = APIRouter(include_in_schema=False)

    @router.get("/")
    async def root() -> RedirectResponse:
        return RedirectResponse(PAGE_PATH, status_code=307)

    @router.get(PAGE_PATH)
    async def page() -> Response:
        return _static("index.html")

    @router.get(PAGE_PATH + "/static/{name}")
    async def static_file(name: str) -> Response:
        return _static(name)

    return router
