"""Client: the blocking client, on httpx.Client."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any, TypeVar

import httpx

from thotbot.client._base import Call, Outcome, _Base
from thotbot.client._models import Key, KeyRequest, Me, Version

__all__ = ["Client"]

T = TypeVar("T")


class Client(_Base):
    """A blocking client for the Thotbot API. Use it as a context manager, or call ``close()``.

    ``api_key`` defaults to ``THOTBOT_API_KEY``; ``base_url`` to ``THOTBOT_API_URL``, then
    ``http://localhost:8000``. ``app``, ``version`` and ``contact`` make the User-Agent
    ``app/version (contact) thotbot-python/X``. Failed idempotent calls are retried ``max_retries``
    times on 429, 503 and transport errors, honouring ``Retry-After``.
    """

    #: How the client waits between retries (tests replace it to see the waits without waiting).
    _sleep: Callable[[float], None] = staticmethod(time.sleep)

    def _connect(self) -> None:
        self._http = httpx.Client(timeout=self.timeout, follow_redirects=False)

    def version(self) -> Version:
        """``GET /v1/version``: the server's version and the API version."""
        return self._run(self._version())

    def me(self) -> Me:
        """``GET /v1/me``: the calling key and its account."""
        return self._run(self._me())

    def list_keys(self) -> list[Key]:
        """``GET /v1/keys``: the account's keys, metadata only."""
        return self._run(self._list_keys())

    def revoke_key(self, key_id: str) -> None:
        """``DELETE /v1/keys/{key_id}``: revokes one of the account's keys (this one too)."""
        self._run(self._revoke_key(key_id))

    def key_requests(self, key_id: str, *, limit: int | None = None) -> list[KeyRequest]:
        """``GET /v1/keys/{key_id}/requests``: one of the account's keys' recent requests, newest
        first (at most ``limit``, 1 to 200; 200 by default)."""
        return self._run(self._key_requests(key_id, limit))

    def revoke_leaked(self, keys: Iterable[str]) -> None:
        """``POST /v1/keys/revoke-leaked``: revokes each valid key given, whoever's; sends no key."""
        self._run(self._revoke_leaked(keys))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def _run(self, call: Call[T]) -> T:
        exchange = self._exchange(call)
        step: Any = next(exchange)
        while True:
            outcome: Outcome = None
            if isinstance(step, httpx.Request):
                try:
                    outcome = self._http.send(step)
                except httpx.RequestError as exc:
                    outcome = exc
            else:
                self._sleep(step)
            try:
                step = exchange.send(outcome)
            except StopIteration as done:
                result: T = done.value
                return result
