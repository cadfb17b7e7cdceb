"""KeyVerifier without ASGI: header values, cookie, query and address in; a key or a typed error out.

On a real SQLite store: the verifier's rules are the same on any backend, and the store's lookup
is tested on both in tests/storage/. The guard's side (status codes, challenges, logs) is
tests/api/test_auth.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import event

from tests.factories import fake_key, make_api_key, make_user
from thotbot.auth.cache import KeyCache
from thotbot.auth.verifier import KeyVerifier
from thotbot.config import load_settings
from thotbot.core import keys
from thotbot.core.errors import (
    AccountDisabled,
    APIKeyInURL,
    DatabaseUnavailable,
    ExpiredAPIKey,
    InsufficientScope,
    InvalidAPIKey,
    MalformedAPIKey,
    MissingAPIKey,
    RateLimited,
    RevokedAPIKey,
    SessionCookieNotAccepted,
    UnsupportedAuthScheme,
)
from thotbot.core.identity import AuthMethod
from thotbot.ratelimit import RateLimiter
from thotbot.services import Services, build_services
from thotbot.storage import KeyStore

pytestmark = pytest.mark.anyio
ADDRESS = "192.0.2.7"
#: Failures an address may make before the verifier stops reading the store for it.
ANON_LIMIT = 3


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def services(sqlite_url: str) -> Iterator[Services]:
    services = build_services(load_settings(database_url=sqlite_url))
    yield services
    services.engine.dispose()


@pytest.fixture
async def limiter() -> AsyncIterator[RateLimiter]:
    limiter = RateLimiter("600/minute", f"{ANON_LIMIT}/minute")
    yield limiter
    await limiter.close()


@pytest.fixture
def unreachable(tmp_path: Path) -> Iterator[KeyStore]:
    """A real key store whose SQLite file cannot be opened: its directory does not exist."""
    services = build_services(load_settings(database_url=f"sqlite:///{tmp_path}/absent/thotbot.db"))
    yield services.keys
    services.engine.dispose()


@pytest.fixture
def verifier(services: Services, limiter: RateLimiter) -> KeyVerifier:
    return KeyVerifier(services.keys, KeyCache(), limiter)


def _bearer(raw: str) -> bytes:
    return b"Bearer " + raw.encode()


async def test_a_valid_key_is_verified_and_cached(verifier: KeyVerifier, services: Services) -> None:
    raw, record = make_api_key(services)

    entry = await verifier.verify(_bearer(raw), address=ADDRESS)

    assert entry.key_id == record.id
    assert entry.identity.account_id == record.account_id
    assert entry.identity.method is AuthMethod.API_KEY
    assert entry.identity.key_id == record.id
    assert not entry.identity.read_only
    assert verifier.cache.get(keys.digest(raw)) is entry
    # The second time it is the cache's answer: the same object, no store read.
    assert await verifier.verify(_bearer(raw), address=ADDRESS) is entry


async def test_the_scheme_is_case_insensitive_and_spaces_are_tolerated(
    verifier: KeyVerifier, services: Services
) -> None:
    raw, record = make_api_key(services)

    entry = await verifier.verify(b"  bEaReR   " + raw.encode() + b"  ")

    assert entry.key_id == record.id


@pytest.mark.parametrize(
    ("authorization", "error"),
    [
        pytest.param(None, MissingAPIKey, id="absent"),
        pytest.param(b"", MissingAPIKey, id="empty"),
        pytest.param(b"Bearer   ", MissingAPIKey, id="empty-token"),
        pytest.param(b"Basic dXNlcjpwYXNz", UnsupportedAuthScheme, id="basic"),
        pytest.param(fake_key().encode(), UnsupportedAuthScheme, id="bare-key"),
        pytest.param(b"Bearer thot_ak_" + b"a" * 95, MalformedAPIKey, id="short"),
        pytest.param(b"Bearer thot_ak_" + b"A" * 96, MalformedAPIKey, id="uppercase"),
        pytest.param(b"Bearer sk_live_4eC39HqLyjWDarjtT1zdp7dc", MalformedAPIKey, id="not-ours"),
    ],
)
async def test_malformed_credentials(
    verifier: KeyVerifier, authorization: bytes | None, error: type[Exception]
) -> None:
    with pytest.raises(error):
        await verifier.verify(authorization, address=ADDRESS)

    assert len(verifier.cache) == 0


async def test_two_authorization_headers_are_refused_even_when_both_are_valid(
    verifier: KeyVerifier, services: Services
) -> None:
    raw, _ = make_api_key(services)

    with pytest.raises(MalformedAPIKey, match="exactly one"):
        await verifier.verify((_bearer(raw), _bearer(raw)))


async def test_an_unknown_key_is_invalid_and_not_cached(verifier: KeyVerifier) -> None:
    with pytest.raises(InvalidAPIKey):
        await verifier.verify(_bearer(fake_key()), address=ADDRESS)

    assert len(verifier.cache) == 0


async def test_an_address_that_keeps_failing_is_refused_before_the_store_is_read(
    verifier: KeyVerifier, limiter: RateLimiter, services: Services, unreachable: KeyStore
) -> None:
    raw, record = make_api_key(services)
    await verifier.verify(_bearer(raw), address=ADDRESS)  # cached
    for _ in range(ANON_LIMIT):
        await limiter.hit_anon(ADDRESS)  # what the guard counts for each failure
    # From here on a store read would fail loudly: an answer other than that means none was made.
    verifier.store = unreachable

    with pytest.raises(RateLimited):
        await verifier.verify(_bearer(fake_key()), address=ADDRESS)
    # A key already verified needs no lookup, so the address's failures do not stop it.
    assert (await verifier.verify(_bearer(raw), address=ADDRESS)).key_id == record.id
    # Another address is not stopped: its unknown key is looked up.
    with pytest.raises(DatabaseUnavailable):
        await verifier.verify(_bearer(fake_key()), address="192.0.2.8")


async def test_a_revoked_key(verifier: KeyVerifier, services: Services) -> None:
    raw, record = make_api_key(services)
    services.keys.revoke(record.id)

    with pytest.raises(RevokedAPIKey):
        await verifier.verify(_bearer(raw))
    # identify names the key all the same: the guard logs a refused key by its id.
    assert (await verifier.identify(_bearer(raw))).key_id == record.id


async def test_an_expired_key(verifier: KeyVerifier, services: Services) -> None:
    raw, _ = make_api_key(services, expires_at=datetime.now(UTC) - timedelta(seconds=1))

    with pytest.raises(ExpiredAPIKey):
        await verifier.verify(_bearer(raw))


async def test_revoked_beats_expired(verifier: KeyVerifier, services: Services) -> None:
    raw, record = make_api_key(services, expires_at=datetime.now(UTC) - timedelta(days=1))
    services.keys.revoke(record.id)

    with pytest.raises(RevokedAPIKey):
        await verifier.verify(_bearer(raw))


async def test_a_disabled_account(verifier: KeyVerifier, services: Services) -> None:
    account = make_user(services)
    raw, _ = make_api_key(services, account)
    assert services.users.set_disabled(account.id, True)

    with pytest.raises(AccountDisabled):
        await verifier.verify(_bearer(raw))


@pytest.mark.parametrize("method", ["GET", "HEAD", None])
async def test_a_read_only_key_may_read(
    verifier: KeyVerifier, services: Services, method: str | None
) -> None:
    raw, _ = make_api_key(services, read_only=True)

    entry = await verifier.verify(_bearer(raw), method=method)

    assert entry.identity.read_only


@pytest.mark.parametrize("method", ["POST", "PATCH", "DELETE"])
async def test_a_read_only_key_may_not_write(verifier: KeyVerifier, services: Services, method: str) -> None:
    raw, _ = make_api_key(services, read_only=True)

    with pytest.raises(InsufficientScope):
        await verifier.verify(_bearer(raw), method=method)


@pytest.mark.parametrize("name", [b"thotbot_session", b"__Host-thotbot_session"])
async def test_a_session_cookie_is_not_an_api_key(verifier: KeyVerifier, name: bytes) -> None:
    with pytest.raises(SessionCookieNotAccepted):
        await verifier.verify(None, b";theme=dark; " + name + b"=abc123")
    with pytest.raises(SessionCookieNotAccepted):
        await verifier.verify(b"Bearer ", b";" + name + b"=abc123")
    # Another cookie that merely starts alike is no session cookie.
    with pytest.raises(MissingAPIKey):
        await verifier.verify(None, b";" + name + b"_old=abc123")


async def test_a_session_cookie_beside_a_valid_key_is_ignored(
    verifier: KeyVerifier, services: Services
) -> None:
    raw, record = make_api_key(services)

    entry = await verifier.verify(_bearer(raw), b";thotbot_session=abc123")

    assert entry.key_id == record.id


@pytest.mark.parametrize("template", ["api_key={key}", "q=Bearer+{key}", "x=%74hot_ak_{hex}", "{key}"])
async def test_a_key_in_the_query_is_refused_before_anything_else(
    verifier: KeyVerifier, services: Services, template: str
) -> None:
    raw, _ = make_api_key(services)
    query = template.format(key=raw, hex=raw.removeprefix(keys.PREFIX)).encode()

    # Checked first: even a valid key in the header, or two headers, do not change the answer.
    with pytest.raises(APIKeyInURL):
        await verifier.verify(_bearer(raw), query_string=query)
    with pytest.raises(APIKeyInURL):
        await verifier.verify((b"Bearer x", b"Bearer y"), query_string=query)


async def test_a_query_without_a_key_is_fine(verifier: KeyVerifier, services: Services) -> None:
    raw, record = make_api_key(services)

    entry = await verifier.verify(_bearer(raw), query_string=b"from=2026-05-01&to=2026-05-31")

    assert entry.key_id == record.id


async def test_an_unreachable_store_is_a_typed_error(unreachable: KeyStore, limiter: RateLimiter) -> None:
    verifier = KeyVerifier(unreachable, KeyCache(), limiter)

    with pytest.raises(DatabaseUnavailable):
        await verifier.verify(_bearer(fake_key()))


@pytest.fixture
def key_reads(services: Services) -> Iterator[list[str]]:
    """Every SELECT on api_keys the real engine runs, as SQL text: what a lookup costs the database."""
    seen: list[str] = []

    def count(conn: object, cursor: object, statement: str, *args: object) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "api_keys" in statement:
            seen.append(statement)

    event.listen(services.engine, "before_cursor_execute", count)
    yield seen
    event.remove(services.engine, "before_cursor_execute", count)


async def test_a_flood_of_one_unknown_key_costs_one_database_read(
    verifier: KeyVerifier, key_reads: list[str]
) -> None:
    unknown = fake_key()
    for n in range(50):
        with pytest.raises(InvalidAPIKey):
            await verifier.verify(_bearer(unknown), address=f"198.51.100.{n}")

    assert len(key_reads) == 1
    assert verifier.cache.missing == 1


async def test_concurrent_misses_share_one_database_read(
    verifier: KeyVerifier, services: Services, key_reads: list[str]
) -> None:
    made = [make_api_key(services) for _ in range(20)]
    unknown = [fake_key() for _ in range(5)]

    async def one(raw: str) -> str:
        try:
            return (await verifier.verify(_bearer(raw), address=ADDRESS)).key_id
        except InvalidAPIKey:
            return "invalid"

    # Twice each known key, at once: the copies wait for the same answer.
    raws = [raw for raw, _ in made] * 2 + unknown
    answers = await asyncio.gather(*(one(raw) for raw in raws))

    assert answers == [record.id for _, record in made] * 2 + ["invalid"] * 5
    # The first miss goes out alone; all the others queue behind it and go out together.
    assert len(key_reads) <= 2
    assert len(verifier.cache) == 20


async def test_a_key_created_after_a_flood_of_unknown_keys_works_at_once(
    services: Services, limiter: RateLimiter
) -> None:
    # Two instances on one database: this one has learnt many digests that name no key...
    here = KeyVerifier(services.keys, KeyCache(), limiter)
    for n in range(100):
        with pytest.raises(InvalidAPIKey):
            await here.verify(_bearer(fake_key()), address=f"203.0.113.{n}")
    # ...when another instance creates a key: no key change has reached this one yet.
    elsewhere = build_services(load_settings(database_url=services.settings.database_url_value()))
    try:
        raw, record = make_api_key(elsewhere)
    finally:
        elsewhere.engine.dispose()

    assert (await here.verify(_bearer(raw), address=ADDRESS)).key_id == record.id


async def test_an_unknown_key_is_asked_for_again_after_its_time(
    services: Services, limiter: RateLimiter, key_reads: list[str]
) -> None:
    verifier = KeyVerifier(services.keys, KeyCache(missing_ttl=0.0), limiter)
    unknown = fake_key()
    for _ in range(3):
        with pytest.raises(InvalidAPIKey):
            await verifier.verify(_bearer(unknown), address=ADDRESS)

    assert len(key_reads) == 3


async def test_a_database_outage_fails_every_waiting_miss(
    verifier: KeyVerifier, unreachable: KeyStore
) -> None:
    verifier.store = unreachable

    answers = await asyncio.gather(
        *(verifier.verify(_bearer(fake_key()), address=ADDRESS) for _ in range(5)), return_exceptions=True
    )

    assert all(isinstance(answer, DatabaseUnavailable) for answer in answers)
    # Nothing was learnt from a failed read: the same keys are asked for again later.
    assert verifier.cache.missing == 0
