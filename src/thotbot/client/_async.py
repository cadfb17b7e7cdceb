"""AsyncClient: the asyncio client, on httpx.AsyncClient; the same calls as Client, awaited."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from types import TracebackType
from typing import Any, TypeVar

import httpx

from thotbot.client._base import Call, Outcome, _Base
from thotbot.client._models import Key, KeyRequest, Me, Version

__all__ = ["AsyncClient"]

T = TypeVar("T")


class AsyncClient(_Base):
    """The asyncio twin of ``Client``: the same arguments and methods, each a coroutine.

    Use it as ``async with AsyncClient(...) as client:``, or await ``aclose()``.
    """

    #: How the client waits between retries (tests replace it to see the waits without waiting).
    _sleep: Callable[[float], Awaitable[None]] = staticmethod(asyncio.sleep)

    def _connect(self) -> None:
        self._http = httpx.AsyncClient(timeout=self.timeout, follow_redirects=False)

    async def version(self) -> Version:
        """``GET /v1/version``: the server's version and the API version."""
        return await self._run(self._version())

    async def me(self) -> Me:
        """``GET /v1/me``: the calling key and its account."""
        return await self._run(self._me())

    async def list_keys(self) -> list[Key]:
        """``GET /v1/keys``: the account's keys, metadata only."""
        return await self._run(self._list_keys())

    async def revoke_key(self, key_id: str) -> None:
        """``DELETE /v1/keys/{key_id}``: revokes one of the account's keys (this one too)."""
        await self._run(self._revoke_key(key_id))

    async def key_requests(self, key_id: str, *, limit: int | None = None) -> list[KeyRequest]:
        """``GET /v1/keys/{key_id}/requests``: one of the account's keys' recent requests, newest
        first (at most ``limit``, 1 to 200; 200 by default)."""
        return await self._run(self._key_requests(key_id, limit))

    async def revoke_leaked(self, keys: Iterable[str]) -> None:
        """``POST /v1/keys/revoke-leaked``: revokes each valid key given, whoever's; sends no key."""
        await self._run(self._revoke_leaked(keys))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.aclose()

    async def _run(self, call: Call[T]) -> T:
        exchange = self._exchange(call)
        step: Any = next(exchange)
        while True:
            outcome: Outcome = None
            if isinstance(step, httpx.Request):
                try:
                    outcome = await self._http.send(step)
                except httpx.RequestError as exc:
                    outcome = exc
            else:
                await self._sleep(step)
            try:
                step = exchange.send(outcome)
            except StopIteration as done:
                result: T = done.value
                return result
