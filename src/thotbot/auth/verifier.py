"""Key verification without ASGI: from the credentials a request carries to the key they name.

``KeyVerifier`` takes what a caller sent (the Authorization header's value, the Cookie header, the
raw query string) and the client's address, as plain bytes and str, and answers with the verified
key (its record and its ``Identity``) or raises the typed ``ThotbotError`` that says why not. It owns
the cache lookup and, on a miss, the key store's read. The ASGI guard (``thotbot.web.guard``) is glue
around it: scope parsing, rate limits, usage, the access log and the problem response.

It runs on every API call, so it keeps to dict lookups and one SHA-256 for a cached key: no I/O, no
thread hop and no await (``cached``). Only a cache miss reads the store, in a worker thread, with
the other misses of the moment (``KeyLookups``).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time

import anyio.to_thread
from sqlalchemy.exc import SQLAlchemyError

from thotbot.auth.cache import CachedKey, KeyCache
from thotbot.core import keys
from thotbot.core.cookies import SESSION_COOKIE_NAMES
from thotbot.core.errors import (
    AccountDisabled,
    APIKeyInURL,
    DatabaseUnavailable,
    DuplicateAuthorization,
    ExpiredAPIKey,
    InsufficientScope,
    InvalidAPIKey,
    IPNotAllowed,
    MissingAPIKey,
    RateLimited,
    RevokedAPIKey,
    SessionCookieNotAccepted,
    UnsupportedAuthScheme,
)
from thotbot.core.identity import READ_METHODS
from thotbot.core.redaction import holds_key
from thotbot.ratelimit import RateLimiter
from thotbot.storage import KeyStore

__all__ = ["Authorization", "KeyLookups", "KeyVerifier", "check_key", "refuse_key_in_query"]

#: The Authorization header's value; a tuple of every value when the header came more than once.
Authorization = bytes | tuple[bytes, ...] | None

log = logging.getLogger("thotbot.auth")


class KeyVerifier:
    """Answers who a request's credentials name, from the cache or, on a miss, the key store."""

    def __init__(self, store: KeyStore, cache: KeyCache, limiter: RateLimiter) -> None:
        self.cache = cache
        self.limiter = limiter
        self._lookups = KeyLookups(store, cache)

    @property
    def store(self) -> KeyStore:
        return self._lookups.store

    @store.setter
    def store(self, store: KeyStore) -> None:
        self._lookups.store = store

    async def verify(
        self,
        authorization: Authorization,
        cookie: bytes = b"",
        query_string: bytes = b"",
        address: str = "-",
        *,
        method: str | None = None,
    ) -> CachedKey:
        """The key these credentials name, usable now (and, given ``method``, for that method).

        Raises what ``identify`` raises, then RevokedAPIKey, ExpiredAPIKey, AccountDisabled,
        InsufficientScope (a read-only key used to write) or IPNotAllowed (outside its allowlist).
        """
        entry = await self.identify(authorization, cookie, query_string, address)
        check_key(entry, method, address)
        return entry

    def cached(
        self, authorization: Authorization, cookie: bytes = b"", query_string: bytes = b""
    ) -> CachedKey | bytes:
        """Without awaiting: the cached key these credentials name, or the digest to look up.

        Raises as ``identify`` does, InvalidAPIKey included for a digest lately found to name no key.
        """
        if query_string:
            refuse_key_in_query(query_string)
        if isinstance(authorization, tuple):
            raise DuplicateAuthorization()
        digest = keys.bearer_digest(authorization) or keys.digest(_bearer_token(authorization, cookie))
        cache = self.cache
        entry = cache.get(digest)
        if entry is not None:
            return entry
        if cache.is_missing(digest):
            raise InvalidAPIKey
        return digest

    async def identify(
        self, authorization: Authorization, cookie: bytes = b"", query_string: bytes = b"", address: str = "-"
    ) -> CachedKey:
        """The key these credentials name, whatever its state (``check_key`` judges that).

        The guard calls ``cached``, then ``load`` on a miss, and ``check_key`` apart: a refused key
        is still named in the access log and, on a restricted endpoint, in its account's security log.

        Raises APIKeyInURL (a key in the query, checked first), MalformedAPIKey (two Authorization
        headers, or not a key), MissingAPIKey, SessionCookieNotAccepted, UnsupportedAuthScheme,
        InvalidAPIKey (no such key), RateLimited (an address that keeps failing, before a store read)
        or DatabaseUnavailable.
        """
        found = self.cached(authorization, cookie, query_string)
        if isinstance(found, CachedKey):
            return found
        return await self.load(found, address)

    async def load(self, digest: bytes, address: str = "-") -> CachedKey:
        """A cache miss: read the key from the store, with other requests' misses, and cache it."""
        if await self.limiter.anon_exhausted(address):
            # This address keeps failing: answer 429 before spending a database lookup on it.
            raise RateLimited(60, "Too many failed requests from this address; retry later.")
        entry = await self._lookups.find(digest)
        if entry is None:
            raise InvalidAPIKey
        return entry


class KeyLookups:
    """Cache misses that arrive together share one store read and one worker thread.

    A miss waits for the read in flight to finish, then goes out with every miss that queued meanwhile,
    up to ``max_batch`` digests in one ``find_by_hashes``: under a flood of new keys (a cold start,
    a key rotation across a fleet) the database sees a few reads a moment, not one per request, and
    the event loop hops to a thread once per batch. What was read is cached, found or not.
    """

    def __init__(self, store: KeyStore, cache: KeyCache, max_batch: int = 200) -> None:
        self.store = store
        self._cache = cache
        self._max_batch = max_batch
        self._queued: dict[bytes, asyncio.Future[CachedKey | None]] = {}
        self._reading = False

    async def find(self, digest: bytes) -> CachedKey | None:
        future = self._queued.get(digest)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._queued[digest] = future
            if not self._reading:
                self._reading = True
                asyncio.get_running_loop().create_task(self._read_queued(), name="thotbot-key-lookup")
        # Shielded: a client that hangs up must not cancel the answer others wait for.
        return await asyncio.shield(future)

    async def _read_queued(self) -> None:
        try:
            while self._queued:
                batch = dict(itertools.islice(self._queued.items(), self._max_batch))
                for digest in batch:
                    del self._queued[digest]
                await self._read(batch)
        finally:
            self._reading = False

    async def _read(self, batch: dict[bytes, asyncio.Future[CachedKey | None]]) -> None:
        cache = self._cache
        generation = cache.generation
        try:
            records = await anyio.to_thread.run_sync(self.store.find_by_hashes, list(batch))
        except SQLAlchemyError:
            log.warning("key lookup failed: database unavailable", exc_info=True)
            for future in batch.values():
                if not future.done():
                    future.set_exception(DatabaseUnavailable())
            return
        except BaseException as exc:  # the edge of a task: every waiter gets an answer
            for future in batch.values():
                if not future.done():
                    future.set_exception(exc if isinstance(exc, Exception) else DatabaseUnavailable())
            raise
        for digest, future in batch.items():
            record = records.get(digest)
            if record is None:
                cache.put_missing(digest, generation)
                entry = None
            else:
                entry = cache.put(digest, record, generation)
            if not future.done():
                future.set_result(entry)


def check_key(entry: CachedKey, method: str | None = None, address: str | None = None) -> None:
    """Raise unless the key may be used now: not revoked, not expired, its account not disabled;
    given the request's ``method``, not a read-only key asked to write; and, given the client's
    ``address``, that address inside the key's IP allowlist when it has one (IPNotAllowed)."""
    if entry.revoked_ts is not None or entry.expires_ts is not None:
        now = time.time()
        if entry.revoked_ts is not None and entry.revoked_ts <= now:
            raise RevokedAPIKey
        if entry.expires_ts is not None and entry.expires_ts <= now:
            raise ExpiredAPIKey
    if entry.account_disabled:
        raise AccountDisabled
    if method is not None and entry.read_only and method not in READ_METHODS:
        raise InsufficientScope
    # A key without a list pays one attribute test; with one, its address is parsed once.
    networks = entry.networks
    if networks is not None and address is not None and not networks.allows(address):
        raise IPNotAllowed(address)


def refuse_key_in_query(query_string: bytes) -> None:
    """APIKeyInURL if the raw query holds a key, under any encoding (``holds_key`` decodes them)."""
    if query_string and holds_key(query_string.decode("latin-1")):
        raise APIKeyInURL


def _bearer_token(authorization: bytes | None, cookie: bytes) -> str:
    value = authorization.decode("latin-1").strip() if authorization is not None else ""
    if not value:
        if _has_session_cookie(cookie):
            raise SessionCookieNotAccepted
        raise MissingAPIKey
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer":
        raise UnsupportedAuthScheme
    token = token.strip()
    if not token:
        if _has_session_cookie(cookie):
            raise SessionCookieNotAccepted
        raise MissingAPIKey("The Bearer token is empty: send 'Authorization: Bearer thot_ak_...'.")
    return token


_SESSION_COOKIE_PREFIXES = tuple(name.encode() + b"=" for name in SESSION_COOKIE_NAMES)


def _has_session_cookie(cookie: bytes) -> bool:
    # Either spelling: the verifier answers the same whatever THOTBOT_PUBLIC_URL says.
    return any(part.strip().startswith(_SESSION_COOKIE_PREFIXES) for part in cookie.split(b";"))
