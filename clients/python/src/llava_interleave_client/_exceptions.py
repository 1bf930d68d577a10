"""Error hierarchy, modelled on openai-python.

::

    InterleaveError
    ├── MediaError                      (a builder could not read or recognise a file; also a ValueError)
    └── APIError                        (anything that happened while talking to the server)
        ├── APIConnectionError          (no usable HTTP response: refused, reset, DNS, truncated stream)
        │   └── APITimeoutError         (connect / read / write / pool timeout)
        ├── APIResponseValidationError  (a 2xx body that is not the expected JSON)
        ├── APIStreamError              (an error event inside a stream that had already started)
        └── APIStatusError              (HTTP status >= 400)
            ├── BadRequestError           400
            ├── AuthenticationError       401
            ├── PermissionDeniedError     403
            ├── NotFoundError             404
            ├── RequestTooLargeError      413
            ├── UnprocessableEntityError  422
            ├── RateLimitError            429
            └── InternalServerError       >= 500
                └── ServiceUnavailableError 503

Every :class:`APIError` carries the server's error ``message``, ``type``, ``param`` and ``code`` (from the
body ``{"error": {...}}`` when there is one), the ``request_id`` (response header ``x-request-id``) and the
``request`` / ``response`` objects when they exist.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

import httpx

__all__ = [
    "InterleaveError",
    "MediaError",
    "APIError",
    "APIConnectionError",
    "APITimeoutError",
    "APIResponseValidationError",
    "APIStreamError",
    "APIStatusError",
    "BadRequestError",
    "AuthenticationError",
    "PermissionDeniedError",
    "NotFoundError",
    "RequestTooLargeError",
    "UnprocessableEntityError",
    "RateLimitError",
    "InternalServerError",
    "ServiceUnavailableError",
    "make_status_error",
]

REQUEST_ID_HEADER = "x-request-id"


class InterleaveError(Exception):
    """Base class of every exception this SDK raises on purpose."""


class MediaError(InterleaveError, ValueError):
    """A message builder could not turn its input into a content part.

    Raised for unreadable or empty files, content whose type is not a supported image / video format
    (detected from magic bytes, never from the extension), or inconsistent arguments (e.g. labels that
    do not match the views).
    """


class APIError(InterleaveError):
    """An error while talking to the server.

    Attributes:
        message: human-readable message (the server's ``error.message`` when it sent one).
        request: the ``httpx.Request`` that failed, when known.
        body: the decoded JSON error body (or raw text), when there was one.
        type / param / code: the fields of the server's ``{"error": {...}}`` object, or ``None``.
        request_id: the server's ``x-request-id`` response header, or ``None``.
    """

    def __init__(
        self,
        message: str,
        *,
        request: httpx.Request | None = None,
        body: Any = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.request = request
        self.body = body
        self.request_id = request_id
        err = _error_object(body)
        self.type: str | None = _opt_str(err.get("type"))
        self.param: str | None = _opt_str(err.get("param"))
        self.code: str | int | None = err.get("code")

    def __str__(self) -> str:
        extra = f" (request_id={self.request_id})" if self.request_id else ""
        return f"{self.message}{extra}"


class APIConnectionError(APIError):
    """The server could not be reached, or the connection broke before a complete response arrived."""

    def __init__(self, message: str = "Connection error.", *, request: httpx.Request | None = None) -> None:
        super().__init__(message, request=request)


class APITimeoutError(APIConnectionError):
    """A connect, read, write or pool timeout expired (see the client's ``timeout``, in seconds)."""

    def __init__(self, message: str = "Request timed out.", *, request: httpx.Request | None = None) -> None:
        super().__init__(message, request=request)


class APIResponseValidationError(APIError):
    """A successful response whose body is not the JSON the SDK expects."""

    def __init__(self, message: str, *, response: httpx.Response, body: Any = None) -> None:
        super().__init__(
            message, request=response.request, body=body, request_id=response.headers.get(REQUEST_ID_HEADER)
        )
        self.response = response
        self.status_code = response.status_code


class APIStreamError(APIError):
    """The server sent an error event (``data: {"error": {...}}``) after the stream had started.

    The HTTP status was already 200, so there is no status code; ``type`` / ``code`` say what happened.
    Such requests are never retried by the SDK.
    """

    def __init__(self, message: str, *, response: httpx.Response, body: Any = None) -> None:
        super().__init__(
            message, request=response.request, body=body, request_id=response.headers.get(REQUEST_ID_HEADER)
        )
        self.response = response


class APIStatusError(APIError):
    """The server answered with an HTTP status >= 400.

    Attributes (besides :class:`APIError`'s): ``status_code`` (int) and ``response`` (``httpx.Response``).
    """

    status_code: int

    def __init__(self, message: str, *, response: httpx.Response, body: Any = None) -> None:
        super().__init__(
            message, request=response.request, body=body, request_id=response.headers.get(REQUEST_ID_HEADER)
        )
        self.response = response
        self.status_code = response.status_code

    def __str__(self) -> str:
        rid = f", request_id={self.request_id}" if self.request_id else ""
        return f"Error code: {self.status_code} - {self.message}{rid}"


class BadRequestError(APIStatusError):
    """HTTP 400: the request is invalid (bad field, unreadable media, prompt + max_tokens over the context)."""


class AuthenticationError(APIStatusError):
    """HTTP 401: missing or wrong API key."""


class PermissionDeniedError(APIStatusError):
    """HTTP 403: the key may not do this (e.g. a ``file://`` URL outside the allowed media directory)."""


class NotFoundError(APIStatusError):
    """HTTP 404: unknown path or model."""


class RequestTooLargeError(APIStatusError):
    """HTTP 413: the request body (data URLs are about 4/3 of the file size) is over the server's limit."""


class UnprocessableEntityError(APIStatusError):
    """HTTP 422: the server understood the request but cannot process it."""


class RateLimitError(APIStatusError):
    """HTTP 429: too many requests; retried automatically, honouring ``retry-after``."""


class InternalServerError(APIStatusError):
    """HTTP >= 500: a server-side failure (502 and 504 are retried automatically)."""


class ServiceUnavailableError(InternalServerError):
    """HTTP 503: the server is overloaded, starting or draining; retried automatically."""


_STATUS_CLASSES: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    413: RequestTooLargeError,
    422: UnprocessableEntityError,
    429: RateLimitError,
    503: ServiceUnavailableError,
}


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _error_object(body: Any) -> Mapping[str, Any]:
    """The ``{"message", "type", "param", "code"}`` object inside an error body, or ``{}``."""
    if isinstance(body, Mapping):
        err = body.get("error")
        if isinstance(err, Mapping):
            return err
    return {}


def _message_from_body(body: Any, response: httpx.Response) -> str:
    err = _error_object(body)
    if err.get("message"):
        return str(err["message"])
    if isinstance(body, Mapping):
        if isinstance(body.get("error"), str):
            return body["error"]
        if body.get("message"):
            return str(body["message"])
        if "detail" in body:  # FastAPI's default error shape
            detail = body["detail"]
            return detail if isinstance(detail, str) else json.dumps(detail)
    if isinstance(body, str) and body.strip():
        return body.strip()[:2000]
    return f"HTTP {response.status_code} {response.reason_phrase}".strip()


def decode_body(response: httpx.Response) -> Any:
    """The response body as JSON if it parses, else as text (``None`` if empty). The body must be read."""
    text = response.text
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def make_status_error(response: httpx.Response) -> APIStatusError:
    """Build the :class:`APIStatusError` subclass for a (read) error response.

    The class comes from the status code (400, 401, 403, 404, 413, 422, 429, 503, any other >= 500;
    other 4xx give a plain :class:`APIStatusError`); message / type / param / code from the body
    ``{"error": {...}}`` (falling back to FastAPI's ``{"detail": ...}`` or the raw text); ``request_id``
    from the ``x-request-id`` header.
    """
    body = decode_body(response)
    status = response.status_code
    cls = _STATUS_CLASSES.get(status)
    if cls is None:
        cls = InternalServerError if status >= 500 else APIStatusError
    return cls(_message_from_body(body, response), response=response, body=body)
