"""Retry policy: which failures are retried and how long to wait (exponential backoff with jitter,
or what the server asks for with ``retry-after-ms`` / ``retry-after``)."""

from __future__ import annotations

import email.utils
import random
import time
from typing import Mapping

import httpx

__all__ = [
    "RETRY_STATUSES",
    "INITIAL_RETRY_DELAY",
    "MAX_RETRY_DELAY",
    "MAX_RETRY_AFTER",
    "should_retry_response",
    "parse_retry_after",
    "retry_delay",
]

# 429 Too Many Requests, 502 Bad Gateway, 503 Service Unavailable, 504 Gateway Timeout.
RETRY_STATUSES = frozenset({429, 502, 503, 504})
INITIAL_RETRY_DELAY = 0.5  # seconds, first backoff step
MAX_RETRY_DELAY = 8.0  # seconds, cap of the backoff
MAX_RETRY_AFTER = 60.0  # seconds; a longer server hint is not honoured (backoff is used instead)


def should_retry_response(response: httpx.Response) -> bool:
    """Whether an error response is worth retrying.

    The server may decide with ``x-should-retry: true|false``; otherwise 429, 502, 503 and 504 are retried.
    """
    override = response.headers.get("x-should-retry", "").strip().lower()
    if override == "true":
        return True
    if override == "false":
        return False
    return response.status_code in RETRY_STATUSES


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds the server asks the client to wait, or ``None``.

    Reads ``retry-after-ms`` (milliseconds) first, then ``retry-after`` as seconds (int or float) or as
    an HTTP date (RFC 9110, e.g. ``Wed, 21 Oct 2015 07:28:00 GMT``; a date in the past gives 0).
    ``now`` (a Unix time in seconds) is for tests.
    """
    raw_ms = headers.get("retry-after-ms")
    if raw_ms is not None:
        try:
            return max(0.0, float(raw_ms) / 1000.0)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        parsed = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed is None:
        return None
    if parsed.tzinfo is None:  # an HTTP date is always GMT
        import datetime as _dt

        parsed = parsed.replace(tzinfo=_dt.timezone.utc)
    current = time.time() if now is None else now
    return max(0.0, parsed.timestamp() - current)


def retry_delay(retries_taken: int, headers: Mapping[str, str] | None = None) -> float:
    """Seconds to sleep before retry number ``retries_taken + 1``.

    A ``retry-after-ms`` / ``retry-after`` hint between 0 and 60 s is honoured exactly. Otherwise the
    delay is ``min(0.5 * 2**retries_taken, 8)`` seconds minus up to 25 % jitter (so clients that failed
    together do not come back together).
    """
    if headers is not None:
        hinted = parse_retry_after(headers)
        if hinted is not None and 0 <= hinted <= MAX_RETRY_AFTER:
            return hinted
    base = min(INITIAL_RETRY_DELAY * (2.0**retries_taken), MAX_RETRY_DELAY)
    return base * (1.0 - 0.25 * random.random())
