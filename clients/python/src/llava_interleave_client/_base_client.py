"""HTTP transport: configuration, the request loop with retries, response decoding (sync and async)."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any, Callable, Dict, Mapping, Optional, TypeVar, Union

import httpx
import pydantic

from ._exceptions import (
    APIConnectionError,
    APIResponseValidationError,
    APITimeoutError,
    make_status_error,
)
from ._retry import retry_delay, should_retry_response
from ._streaming import AsyncStream, Stream
from ._version import __version__

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_TIMEOUT",
    "DEFAULT_MAX_RETRIES",
    "SyncAPIClient",
    "AsyncAPIClient",
]

log = logging.getLogger("llava_interleave_client")

T = TypeVar("T")

DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"
# 10 minutes for the whole read of a long generation (and between two stream chunks), 5 s to connect.
DEFAULT_TIMEOUT = httpx.Timeout(600.0, connect=5.0)
DEFAULT_MAX_RETRIES = 2

TimeoutTypes = Union[float, httpx.Timeout, None]


def _to_timeout(value: TimeoutTypes) -> httpx.Timeout:
    if isinstance(value, httpx.Timeout):
        return value
    if value is None:
        return httpx.Timeout(None)
    return httpx.Timeout(float(value), connect=min(float(value), DEFAULT_TIMEOUT.connect or 5.0))


class _NotGiven:
    def __repr__(self) -> str:
        return "NOT_GIVEN"


NOT_GIVEN: Any = _NotGiven()


class _BaseClient:
    """Settings shared by the sync and async clients."""

    def __init__(
        self,
        *,
        base_url: str | None,
        api_key: str | None,
        timeout: TimeoutTypes | _NotGiven,
        max_retries: int,
        default_headers: Mapping[str, str] | None,
    ) -> None:
        if base_url is None:
            base_url = os.environ.get("INTERLEAVE_BASE_URL") or DEFAULT_BASE_URL
        if api_key is None:
            api_key = os.environ.get("INTERLEAVE_API_KEY") or None
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        self.base_url = str(base_url).rstrip("/")
        self.api_key = api_key
        self.timeout = DEFAULT_TIMEOUT if isinstance(timeout, _NotGiven) else _to_timeout(timeout)
        self.max_retries = max_retries
        self.default_headers: Dict[str, str] = dict(default_headers or {})

    def _url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    def _headers(self, extra: Mapping[str, str] | None) -> Dict[str, str]:
        headers = {
            "Accept": "application/json",
            "User-Agent": f"llava-interleave-client/{__version__} python",
        }
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        headers.update(self.default_headers)
        if extra:
            headers.update(extra)
        return headers

    def _settings(
        self, timeout: TimeoutTypes | _NotGiven, max_retries: int | _NotGiven
    ) -> tuple[httpx.Timeout, int]:
        t = self.timeout if isinstance(timeout, _NotGiven) else _to_timeout(timeout)
        r = self.max_retries if isinstance(max_retries, _NotGiven) else int(max_retries)
        return t, r

    @staticmethod
    def _decode(response: httpx.Response, cast: Callable[[Any], T]) -> T:
        try:
            payload = response.json()
        except ValueError as exc:
            raise APIResponseValidationError(
                f"expected a JSON body, got {response.headers.get('content-type', 'no content-type')}: "
                f"{response.text[:200]!r}",
                response=response,
                body=response.text,
            ) from exc
        try:
            return cast(payload)
        except pydantic.ValidationError as exc:
            raise APIResponseValidationError(f"unexpected response body: {exc}", response=response, body=payload) from exc

    @staticmethod
    def _log_retry(request: httpx.Request, why: str, delay: float, retries_taken: int, max_retries: int) -> None:
        log.info(
            "%s %s: %s; retry %d/%d in %.2f s", request.method, request.url, why, retries_taken + 1, max_retries, delay
        )


class SyncAPIClient(_BaseClient):
    """The blocking transport behind :class:`~llava_interleave_client.Client`."""

    def __init__(self, *, http_client: httpx.Client | None, **settings: Any) -> None:
        super().__init__(**settings)
        self._owns_http_client = http_client is None
        self._http = http_client or httpx.Client(timeout=self.timeout)

    def close(self) -> None:
        """Close the connection pool (unless the ``http_client`` was passed in by you)."""
        if self._owns_http_client:
            self._http.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        cast: Callable[[Any], T],
        body: Any = None,
        stream: bool = False,
        extra_headers: Mapping[str, str] | None = None,
        timeout: TimeoutTypes | _NotGiven = NOT_GIVEN,
        max_retries: int | _NotGiven = NOT_GIVEN,
    ) -> Any:
        """Send a request, retrying connection errors, timeouts, 429/502/503/504 up to ``max_retries``
        times; return ``cast(json)`` or, with ``stream=True``, a :class:`Stream` (never retried once the
        200 headers arrived).

        Raises:
            APIStatusError (a subclass per status), APIConnectionError, APITimeoutError,
            APIResponseValidationError.
        """
        timeout_, max_retries_ = self._settings(timeout, max_retries)
        headers = self._headers(extra_headers)
        if stream:
            headers["Accept"] = "text/event-stream"
        retries_taken = 0
        while True:
            request = self._http.build_request(
                method, self._url(path), json=body, headers=headers, timeout=timeout_
            )
            try:
                response = self._http.send(request, stream=True)
            except httpx.TimeoutException as exc:
                if retries_taken < max_retries_:
                    delay = retry_delay(retries_taken)
                    self._log_retry(request, "timed out", delay, retries_taken, max_retries_)
                    time.sleep(delay)
                    retries_taken += 1
                    continue
                raise APITimeoutError(request=request) from exc
            except httpx.TransportError as exc:
                if retries_taken < max_retries_:
                    delay = retry_delay(retries_taken)
                    self._log_retry(request, f"connection error {exc!r}", delay, retries_taken, max_retries_)
                    time.sleep(delay)
                    retries_taken += 1
                    continue
                raise APIConnectionError(f"Connection error: {exc}", request=request) from exc

            if response.status_code >= 400:
                try:
                    response.read()
                except httpx.HTTPError:
                    pass
                finally:
                    response.close()
                if retries_taken < max_retries_ and should_retry_response(response):
                    delay = retry_delay(retries_taken, response.headers)
                    self._log_retry(request, f"HTTP {response.status_code}", delay, retries_taken, max_retries_)
                    time.sleep(delay)
                    retries_taken += 1
                    continue
                raise make_status_error(response)

            if stream:
                return Stream(response, cast)  # the stream has started: no retry from here on

            try:
                response.read()
            except httpx.TimeoutException as exc:
                if retries_taken < max_retries_:
                    delay = retry_delay(retries_taken)
                    self._log_retry(request, "read timed out", delay, retries_taken, max_retries_)
                    time.sleep(delay)
                    retries_taken += 1
                    continue
                raise APITimeoutError(request=request) from exc
            except httpx.TransportError as exc:
                if retries_taken < max_retries_:
                    delay = retry_delay(retries_taken)
                    self._log_retry(request, f"read error {exc!r}", delay, retries_taken, max_retries_)
                    time.sleep(delay)
                    retries_taken += 1
                    continue
                raise APIConnectionError(f"Connection error: {exc}", request=request) from exc
            finally:
                response.close()
            return self._decode(response, cast)


class AsyncAPIClient(_BaseClient):
    """The asyncio transport behind :class:`~llava_interleave_client.AsyncClient`."""

    def __init__(self, *, http_client: httpx.AsyncClient | None, **settings: Any) -> None:
        super().__init__(**settings)
        self._owns_http_client = http_client is None
        self._http = http_client or httpx.AsyncClient(timeout=self.timeout)

    async def close(self) -> None:
        """Close the connection pool (unless the ``http_client`` was passed in by you)."""
        if self._owns_http_client:
            await self._http.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        cast: Callable[[Any], T],
        body: Any = None,
        stream: bool = False,
        extra_headers: Mapping[str, str] | None = None,
        timeout: TimeoutTypes | _NotGiven = NOT_GIVEN,
        max_retries: int | _NotGiven = NOT_GIVEN,
    ) -> Any:
        """Async version of :meth:`SyncAPIClient.request` (returns an :class:`AsyncStream` when streaming)."""
        timeout_, max_retries_ = self._settings(timeout, max_retries)
        headers = self._headers(extra_headers)
        if stream:
            headers["Accept"] = "text/event-stream"
        retries_taken = 0
        while True:
            request = self._http.build_request(
                method, self._url(path), json=body, headers=headers, timeout=timeout_
            )
            try:
                response = await self._http.send(request, stream=True)
            except httpx.TimeoutException as exc:
                if retries_taken < max_retries_:
                    delay = retry_delay(retries_taken)
                    self._log_retry(request, "timed out", delay, retries_taken, max_retries_)
                    await asyncio.sleep(delay)
                    retries_taken += 1
                    continue
                raise APITimeoutError(request=request) from exc
            except httpx.TransportError as exc:
                if retries_taken < max_retries_:
                    delay = retry_delay(retries_taken)
                    self._log_retry(request, f"connection error {exc!r}", delay, retries_taken, max_retries_)
                    await asyncio.sleep(delay)
                    retries_taken += 1
                    continue
                raise APIConnectionError(f"Connection error: {exc}", request=request) from exc

            if response.status_code >= 400:
                try:
                    await response.aread()
                except httpx.HTTPError:
                    pass
                finally:
                    await response.aclose()
                if retries_taken < max_retries_ and should_retry_response(response):
                    delay = retry_delay(retries_taken, response.headers)
                    self._log_retry(request, f"HTTP {response.status_code}", delay, retries_taken, max_retries_)
                    await asyncio.sleep(delay)
                    retries_taken += 1
                    continue
                raise make_status_error(response)

            if stream:
                return AsyncStream(response, cast)  # the stream has started: no retry from here on

            try:
                await response.aread()
            except httpx.TimeoutException as exc:
                if retries_taken < max_retries_:
                    delay = retry_delay(retries_taken)
                    self._log_retry(request, "read timed out", delay, retries_taken, max_retries_)
                    await asyncio.sleep(delay)
                    retries_taken += 1
                    continue
                raise APITimeoutError(request=request) from exc
            except httpx.TransportError as exc:
                if retries_taken < max_retries_:
                    delay = retry_delay(retries_taken)
                    self._log_retry(request, f"read error {exc!r}", delay, retries_taken, max_retries_)
                    await asyncio.sleep(delay)
                    retries_taken += 1
                    continue
                raise APIConnectionError(f"Connection error: {exc}", request=request) from exc
            finally:
                await response.aclose()
            return self._decode(response, cast)
