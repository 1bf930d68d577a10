"""``client.models``: ``GET /v1/models``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

from ..types import ModelList

if TYPE_CHECKING:
    from .._base_client import AsyncAPIClient, SyncAPIClient


class Models:
    """The models the server serves."""

    def __init__(self, client: "SyncAPIClient") -> None:
        self._client = client

    def list(self, *, extra_headers: Mapping[str, str] | None = None) -> ModelList:
        """``GET /models``: a :class:`ModelList` (iterable of :class:`Model`; ``.data[0].id`` is the name).

        Raises:
            APIStatusError, APIConnectionError, APITimeoutError (see :mod:`llava_interleave_client`).
        """
        return self._client.request("GET", "/models", cast=ModelList.model_validate, extra_headers=extra_headers)


class AsyncModels:
    """The models the server serves (async)."""

    def __init__(self, client: "AsyncAPIClient") -> None:
        self._client = client

    async def list(self, *, extra_headers: Mapping[str, str] | None = None) -> ModelList:
        """``GET /models`` (async); see :meth:`Models.list`."""
        return await self._client.request(
            "GET", "/models", cast=ModelList.model_validate, extra_headers=extra_headers
        )
