"""``Client`` and ``AsyncClient``: the public entry points."""

from __future__ import annotations

from typing import Any, Mapping

import httpx

from ._base_client import (
    DEFAULT_MAX_RETRIES,
    NOT_GIVEN,
    AsyncAPIClient,
    SyncAPIClient,
    TimeoutTypes,
    _NotGiven,
)
from .resources import AsyncChat, AsyncModels, Chat, Models

__all__ = ["Client", "AsyncClient"]


class Client(SyncAPIClient):
    """Blocking client of the LLaVA-NeXT-Interleave server.

    ::

        client = Client()                      # http://127.0.0.1:8000/v1, or $INTERLEAVE_BASE_URL
        model = client.models.list().data[0].id
        answer = client.chat.completions.create(model=model, messages=[user("Hi", image("a.png"))])

    Args:
        base_url: API root including ``/v1``; default ``$INTERLEAVE_BASE_URL`` or
            ``http://127.0.0.1:8000/v1``.
        api_key: sent as ``Authorization: Bearer <key>``; default ``$INTERLEAVE_API_KEY`` (none if unset).
        timeout: seconds (float) or an ``httpx.Timeout``; default 600 s (read, write, pool) and 5 s
            to connect. For streams the read timeout is the longest wait between two chunks.
        max_retries: retries of connection errors, timeouts and HTTP 429 / 502 / 503 / 504 (default 2),
            with exponential backoff and jitter, honouring ``retry-after`` / ``retry-after-ms``.
            A stream that has started is never retried.
        default_headers: headers added to every request.
        http_client: your own ``httpx.Client`` (proxies, transports, limits); not closed by :meth:`close`.

    Use it as a context manager or call :meth:`close` to release its connections.
    """

    def __init__(
        self,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: TimeoutTypes | _NotGiven = NOT_GIVEN,
        max_retries: int = DEFAULT_MAX_RETRIES,
        default_headers: Mapping[str, str] | None = None,
        http_client: httpx.Client | None = None,
    ) -> None:
        super().__init__(
            base_url=base_url, api_key=api_key, timeout=timeout, max_retries=max_retries,
            default_headers=default_headers, http_client=http_client,
        )
        self.chat = Chat(self)
        self.models = Models(self)

    def with_options(
        self,
        *,
        timeout: TimeoutTypes | _NotGiven = NOT_GIVEN,
        max_retries: int | None = None,
        default_headers: Mapping[str, str] | None = None,
    ) -> "Client":
        """A copy of this client with other settings, sharing its connection pool.

        ``client.with_options(max_retries=0).chat.completions.create(...)``
        """
        return Client(
            base_url=self.base_url,
            api_key=self.api_key,
            timeout=self.timeout if isinstance(timeout, _NotGiven) else timeout,
            max_retries=self.max_retries if max_retries is None else max_retries,
            default_headers={**self.default_headers, **(default_headers or {})},
            http_client=self._http,
        )

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class AsyncClient(AsyncAPIClient):
    """Asyncio client of the LLaVA-NeXT-Interleave server; same arguments as :class:`Client`
    (``http_client`` is an ``httpx.AsyncClient``). Use ``async with`` or ``await client.close()``."""

    def __init__(
        self,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: TimeoutTypes | _NotGiven = NOT_GIVEN,
        max_retries: int = DEFAULT_MAX_RETRIES,
        default_headers: Mapping[str, str] | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(
            base_url=base_url, api_key=api_key, timeout=timeout, max_retries=max_retries,
            default_headers=default_headers, http_client=http_client,
        )
        self.chat = AsyncChat(self)
        self.models = AsyncModels(self)

    def with_options(
        self,
        *,
        timeout: TimeoutTypes | _NotGiven = NOT_GIVEN,
        max_retries: int | None = None,
        default_headers: Mapping[str, str] | None = None,
    ) -> "AsyncClient":
        """A copy of this client with other settings, sharing its connection pool."""
        return AsyncClient(
            base_url=self.base_url,
            api_key=self.api_key,
            timeout=self.timeout if isinstance(timeout, _NotGiven) else timeout,
            max_retries=self.max_retries if max_retries is None else max_retries,
            default_headers={**self.default_headers, **(default_headers or {})},
            http_client=self._http,
        )

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()
