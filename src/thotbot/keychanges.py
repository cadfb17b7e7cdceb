"""Key changes broadcast through Redis, so every instance evicts a revoked key at once.

The durable path is the ``key_events`` table, which each server polls every half second; it alone
keeps the contract's one-second promise, and it replays what a server missed while the database
was away. With THOTBOT_REDIS_URL set, the process that commits a change (a server, or the CLI) also
publishes the key ids, and every server's listener evicts them as soon as they arrive. A Redis that
is down costs nothing but that head start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence

import redis
import redis.asyncio

__all__ = ["CHANNEL", "KeyChangeBus"]

log = logging.getLogger("thotbot.keychanges")
CHANNEL = "thotbot:key-changes"
_TIMEOUT = 0.5


class KeyChangeBus:
    def __init__(self, redis_url: str | None) -> None:
        self._url = redis_url
        self._client: redis.Redis | None = None

    @property
    def enabled(self) -> bool:
        return self._url is not None

    def publish(self, key_ids: Sequence[str]) -> None:
        """Announce changed keys; called after the commit, from any thread or the CLI."""
        if self._url is None or not key_ids:
            return
        try:
            if self._client is None:
                self._client = redis.Redis.from_url(
                    self._url, socket_timeout=_TIMEOUT, socket_connect_timeout=_TIMEOUT
                )
            self._client.publish(CHANNEL, " ".join(key_ids))
        except redis.RedisError:
            log.warning("could not publish a key change to Redis; servers will poll it within a second")

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    async def listen(self, on_change: Callable[[list[str]], None], stop: asyncio.Event) -> None:
        """Call ``on_change`` with each batch of changed key ids until ``stop`` is set."""
        if self._url is None:
            return
        failing = False
        while not stop.is_set():
            client = redis.asyncio.Redis.from_url(
                self._url, socket_connect_timeout=_TIMEOUT, health_check_interval=30
            )
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(CHANNEL)
                    if failing:
                        log.info("listening to key changes on Redis again")
                    failing = False
                    while not stop.is_set():
                        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=_TIMEOUT)
                        if message is not None and isinstance(message.get("data"), bytes):
                            on_change(message["data"].decode("ascii", "replace").split())
            except (redis.RedisError, OSError):
                if not failing:
                    log.warning("cannot listen to key changes on Redis; the database poll carries them")
                failing = True
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 2.0)
            finally:
                await client.aclose()
