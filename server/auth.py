"""API key check for ``/v1/*`` (``Authorization: Bearer <key>``); health, ready and metrics stay open."""

from __future__ import annotations

import hmac

from fastapi import Request

from server.errors import unauthorized


def check_api_key(request: Request, api_key: str | None) -> None:
    """Raise a 401 :class:`~server.errors.APIError` unless ``api_key`` is None or the request
    carries it as a bearer token."""
    if not api_key:
        return
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise unauthorized("Missing API key: send 'Authorization: Bearer <key>'.")
    if not hmac.compare_digest(token.strip().encode(), api_key.encode()):
        raise unauthorized("Incorrect API key.")
