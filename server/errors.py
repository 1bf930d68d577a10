"""OpenAI-format errors: ``{"error": {"message", "type", "param", "code"}}`` with OpenAI's statuses.

Raise :class:`APIError` (or a helper below) anywhere in the request path; the app turns it into a JSON
response, or into one ``data: {"error": ...}`` SSE event once a stream has started.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class APIError(Exception):
    """An error that becomes an OpenAI error body.

    Attributes:
        status_code: HTTP status (400, 401, 404, 413, 500, 503).
        message: user-facing text saying what was wrong and where.
        type: OpenAI error type (``invalid_request_error``, ``authentication_error``, ...).
        param: the request field at fault, e.g. ``temperature`` or ``messages[0].content[1]``.
        code: a short machine-readable code, or None.
    """

    def __init__(
        self,
        status_code: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers

    def to_dict(self) -> dict[str, Any]:
        """The OpenAI error body."""
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def invalid_request(message: str, param: str | None = None, code: str | None = None) -> APIError:
    """HTTP 400 ``invalid_request_error``."""
    return APIError(400, message, param=param, code=code)


def unauthorized(message: str = "Invalid or missing API key.") -> APIError:
    """HTTP 401 as OpenAI sends it: type ``invalid_request_error``, code ``invalid_api_key``."""
    return APIError(401, message, type="invalid_request_error", code="invalid_api_key")


def payload_too_large(limit: int) -> APIError:
    """HTTP 413 for a body above ``limit`` bytes."""
    return APIError(
        413,
        f"Request body is larger than the limit of {limit} bytes.",
        code="request_too_large",
    )


def service_unavailable(message: str, retry_after_seconds: int = 1) -> APIError:
    """HTTP 503 (model loading, draining) with ``Retry-After`` (seconds), which clients such as our
    SDK honour before retrying."""
    return APIError(
        503,
        message,
        type="service_unavailable",
        code="service_unavailable",
        headers={"Retry-After": str(retry_after_seconds)},
    )


def request_timeout(message: str) -> APIError:
    """HTTP 408 for a request body that arrived too slowly."""
    return APIError(408, message, code="request_timeout")


def gateway_timeout(message: str) -> APIError:
    """HTTP 504 ``timeout``: the request's deadline (``--request-timeout-seconds``) passed."""
    return APIError(504, message, type="timeout_error", code="timeout")


def internal_error(message: str = "The server failed to process the request.") -> APIError:
    """HTTP 500 ``server_error``."""
    return APIError(500, message, type="server_error", code="internal_error")


def format_loc(loc: Sequence[str | int]) -> str | None:
    """Render a pydantic error location as an OpenAI ``param``: ``messages[0].content[1].text``."""
    out = ""
    for item in loc:
        if isinstance(item, int):
            out += f"[{item}]"
        else:
            out += f".{item}" if out else str(item)
    return out or None
