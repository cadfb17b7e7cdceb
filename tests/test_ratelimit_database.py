"""Rate limits shared through the database: several limiters (as several processes would hold) on one
real SQLite file or PostgreSQL database, syncing explicitly, on a clock the test moves."""

from __future__ import annotations

import functools
import logging
import shutil
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest
from sqlalchemy import Engine, event, select
from starlette.testclient import TestClient

from tests.factories import bearer, make_api_key
from tests.services import postgres_refusing
from thotbot.app import create_app
from thotbot.config import load_settings
from thotbot.ratelimit import RateLimiter, hash_address
from thotbot.services import build_memory_services, build_services
from thotbot.storage.db import make_engine, make_session_factory
from thotbot.storage.models import RateLimitWindow
from thotbot.storage.rate_windows import SQLRateWindowStore

pytestmark = pytest.mark.anyio

T0 = 1_800_000_000.0  # a multiple of 60: a window starts here


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Clock:
    def __init__(self) -> None:
        self.now = T0 + 10

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


MakeLimiter = Callable[..., RateLimiter]


@pytest.fixture
def engines(database_url: str) -> Iterator[list[Engine]]:
    made: list[Engine] = []
    yield made
    for engine in made:
        engine.dispose()


@pytest.fixture
def make_limiter(database_url: str, engines: list[Engine], clock: Clock) -> MakeLimiter:
    """A limiter with an engine of its own on the test's database, as in a process of its own."""

    def make(per_key: str = "5/minute", anon: str = "3/minute", **options: object) -> RateLimiter:
        engines.append(make_engine(database_url))
        store = SQLRateWindowStore(make_session_factory(engines[-1]))
        return RateLimiter(per_key, anon, shared=store, clock=clock, **options)  # type: ignore[arg-type]

    return make


async def sync_all(*limiters: RateLimiter) -> None:
    """Each shares its hits, then each reads back what all shared."""
    for limiter in (*limiters, *limiters):
        await limiter.sync()


def rows(engine: Engine) -> list[tuple[str, int, int]]:
    with engine.connect() as connection:
        table = RateLimitWindow.__table__
        found = connection.execute(select(table.c.bucket, table.c.window_start, table.c.hits))
        return sorted((bucket, start, hits) for bucket, start, hits in found)


async def test_two_processes_share_a_limit_exactly_when_they_sync_between_hits(
    make_limiter: MakeLimiter,
) -> None:
    first, second = make_limiter(), make_limiter()
    allowed = []

    for turn in range(8):
        decision = await (first if turn % 2 else second).hit_key("key_a")
        allowed.append(decision.allowed)
        await sync_all(first, second)

    assert allowed == [True] * 5 + [False] * 3
    assert (await first.hit_key("key_b")).allowed  # another key, its own budget


async def test_each_decision_counts_the_shared_total_and_the_hits_since(
    make_limiter: MakeLimiter, engines: list[Engine]
) -> None:
    first, second = make_limiter("10/minute"), make_limiter("10/minute")
    for _ in range(3):
        await first.hit_key("key_a")
    await second.hit_key("key_a")
    await sync_all(first, second)

    decision = await second.hit_key("key_a")  # 3 + 1 shared, and this one

    assert (decision.remaining, decision.limit, decision.reset_after) == (5, 10, 50)
    assert rows(engines[0]) == [("key/key_a", int(T0), 4)]  # the last hit is not shared yet
    await second.sync()
    assert rows(engines[0]) == [("key/key_a", int(T0), 5)]


async def test_a_process_that_had_not_seen_a_key_learns_its_count_at_its_next_sync(
    make_limiter: MakeLimiter,
) -> None:
    # The overshoot the design admits: what one process lets through before its next sync.
    first, second = make_limiter("2/minute"), make_limiter("2/minute")
    await first.hit_key("key_a")
    await first.hit_key("key_a")
    await sync_all(first, second)

    unseen = await second.hit_key("key_a")
    await second.sync()

    assert unseen.allowed
    assert not (await second.hit_key("key_a")).allowed
    assert not (await first.hit_key("key_a")).allowed


async def test_a_process_learns_hits_shared_after_its_last_one_without_hitting_the_key_again(
    make_limiter: MakeLimiter,
) -> None:
    # Seen in CI with two workers: one shared its hits of a key, read the total back once, and
    # stopped watching (below half the limit); the other's sync came late. Its next hits were then
    # decided on its stale count, and two requests passed the limit.
    first, second = make_limiter("20/minute"), make_limiter("20/minute")
    for _ in range(3):
        await first.hit_key("key_a")
    await first.sync()  # shares 3
    await first.sync()  # reads back 3: the other has shared nothing yet
    for _ in range(17):
        await second.hit_key("key_a")
    await second.sync()  # late: 20 in all now

    await first.sync()  # the first hears of them without hitting the key

    assert not (await first.hit_key("key_a")).allowed


async def test_failed_requests_and_the_miss_path_share_the_address_limit(make_limiter: MakeLimiter) -> None:
    first, second = make_limiter(anon="3/minute"), make_limiter(anon="3/minute")
    await first.hit_anon("198.51.100.7")
    await second.hit_anon("198.51.100.7")
    await sync_all(first, second)
    assert not await first.anon_exhausted("198.51.100.7")

    await first.hit_anon("198.51.100.7")
    await sync_all(first, second)

    assert await second.anon_exhausted("198.51.100.7")
    assert not (await second.hit_anon("198.51.100.7")).allowed
    assert not await first.anon_exhausted("198.51.100.8")


async def test_no_raw_address_is_stored(make_limiter: MakeLimiter, engines: list[Engine]) -> None:
    limiter = make_limiter()
    await limiter.hit_anon("203.0.113.45")

    await limiter.sync()

    [(bucket, _, hits)] = rows(engines[0])
    assert (bucket, hits) == ("anon/" + hash_address("203.0.113.45"), 1)


async def test_windows_follow_the_clock_and_ended_ones_are_deleted(
    make_limiter: MakeLimiter, engines: list[Engine], clock: Clock
) -> None:
    first, second = make_limiter("2/minute"), make_limiter("2/minute")
    await first.hit_key("key_a")
    await second.hit_key("key_a")
    await sync_all(first, second)
    assert not (await first.hit_key("key_a")).allowed

    clock.now = T0 + 60  # the next window, for both
    decisions = [await second.hit_key("key_a"), await first.hit_key("key_a")]
    await sync_all(first, second)

    assert [d.allowed for d in decisions] == [True, True]
    assert decisions[0].reset_after == 60
    assert not (await second.hit_key("key_a")).allowed
    # The first window's last hit was refused and never shared: that window had ended.
    window = int(T0)
    assert rows(engines[0]) == [("key/key_a", window, 2), ("key/key_a", window + 60, 2)]
    # A process deletes the windows that ended over a minute ago, once a minute.
    clock.now = T0 + 60 + 61
    await first.sync()
    assert rows(engines[0]) == [("key/key_a", window + 60, 2)]


@pytest.fixture
def take_down(database_url: str, engines: list[Engine]) -> Callable[[], AbstractContextManager[None]]:
    """Makes the test's database unreachable for the limiters' engines while the context lasts."""

    @contextmanager
    def sqlite_gone() -> Iterator[None]:
        path = Path(database_url.removeprefix("sqlite:///"))
        for engine in engines:
            engine.dispose()
        aside = path.with_name("aside")
        aside.mkdir()
        for file in path.parent.glob(path.name + "*"):
            shutil.move(file, aside)
        path.mkdir()  # SQLite cannot open a directory, nor make a file there
        try:
            yield
        finally:
            path.rmdir()
            for file in aside.iterdir():
                shutil.move(file, path.parent)

    return (
        sqlite_gone
        if database_url.startswith("sqlite")
        else functools.partial(postgres_refusing, database_url)
    )


async def test_with_the_database_down_each_process_counts_on_its_own_then_shares_again(
    make_limiter: MakeLimiter,
    engines: list[Engine],
    take_down: Callable[[], AbstractContextManager[None]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "thotbot.ratelimit")
    first, second = make_limiter("4/minute", retry_after=0), make_limiter("4/minute", retry_after=0)
    await first.hit_key("key_a")
    await second.hit_key("key_a")
    await sync_all(first, second)

    with take_down():
        decisions = [await first.hit_key("key_a") for _ in range(3)]
        await first.sync()
        await first.sync()
        # Counted here, from what the others had shared: 2, then these.
        assert [d.allowed for d in decisions] == [True, True, False]
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert [r.getMessage() for r in warnings] == [
            "rate limit database unreachable: each process counts on its own until it answers"
        ]

    await first.sync()  # the hits counted meanwhile are shared now
    await second.sync()

    assert "rate limit database reachable again: counts are shared" in caplog.text
    assert rows(engines[0]) == [("key/key_a", int(T0), 5)]
    assert not (await second.hit_key("key_a")).allowed


async def test_hits_of_a_window_that_ended_before_its_sync_are_dropped(
    make_limiter: MakeLimiter, engines: list[Engine], clock: Clock
) -> None:
    limiter = make_limiter()
    await limiter.hit_key("key_a")
    clock.now = T0 + 60
    await limiter.hit_key("key_a")

    await limiter.sync()

    assert rows(engines[0]) == [("key/key_a", int(T0) + 60, 1)]


@pytest.mark.parametrize(
    ("workers", "redis", "mode"),
    [(1, None, "local"), (2, None, "database"), (2, "redis://127.0.0.1:6379/15", "redis")],
)
def test_services_share_through_the_database_with_several_workers(
    sqlite_url: str, workers: int, redis: str | None, mode: str
) -> None:
    services = build_services(load_settings(database_url=sqlite_url, workers=workers, redis_url=redis))

    assert services.rate_limiter.mode == mode
    services.engine.dispose()
    services.key_changes.close()


@pytest.mark.postgres
def test_services_on_postgresql_share_through_the_database(postgres_url: str) -> None:
    services = build_services(load_settings(database_url=postgres_url))

    assert services.rate_limiter.mode == "database"
    services.engine.dispose()


def test_memory_services_count_locally() -> None:
    assert build_memory_services(load_settings()).rate_limiter.mode == "local"


def test_the_app_shares_what_it_counted_by_the_time_it_stops(database_url: str) -> None:
    settings = load_settings(database_url=database_url, workers=2, rate_limit="3/minute")
    services = build_services(settings)
    raw, key = make_api_key(services)

    with TestClient(create_app(settings, services), base_url="http://localhost") as client:
        codes = [client.get("/v1/version", headers=bearer(raw)).status_code for _ in range(4)]

    assert codes == [200, 200, 200, 429]
    engine = make_engine(database_url)
    assert [(bucket, hits) for bucket, _, hits in rows(engine)] == [("key/" + key.id, 4)]
    engine.dispose()


async def test_idle_windows_below_a_twentieth_of_their_limit_are_not_read_back(
    make_limiter: MakeLimiter, engines: list[Engine]
) -> None:
    # Tens of thousands of keys in use: reading every window back every 100 ms cost more than serving.
    limiter = make_limiter("100/minute")
    for n in range(300):
        await limiter.hit_key(f"key_{n}")
    await limiter.sync()  # shares the hits
    await limiter.sync()  # reads back what was just shared, once
    statements: list[str] = []

    def seen(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement)

    event.listen(engines[-1], "before_cursor_execute", seen)
    try:
        await limiter.sync()
    finally:
        event.remove(engines[-1], "before_cursor_execute", seen)

    assert not [s for s in statements if "rate_limit_windows" in s]
    # One key past a twentieth of its limit is still watched: others' hits there change a decision.
    for _ in range(50):
        await limiter.hit_key("key_busy")
    await limiter.sync()
    await limiter.sync()
    event.listen(engines[-1], "before_cursor_execute", seen)
    try:
        await limiter.sync()
    finally:
        event.remove(engines[-1], "before_cursor_execute", seen)
    assert [s for s in statements if "rate_limit_windows" in s]


async def test_hits_far_below_the_limit_stay_in_the_process_until_a_twentieth_of_it(
    make_limiter: MakeLimiter, engines: list[Engine]
) -> None:
    # 50,000 keys in use a few times a minute each cost a shared row a request; below a twentieth
    # of the limit no decision is near it, so those hits stay in the process that counted them.
    first, second = make_limiter("100/minute"), make_limiter("100/minute")
    for _ in range(4):
        await first.hit_key("key_a")
    await sync_all(first, second)
    assert rows(engines[0]) == []

    await first.hit_key("key_a")  # the fifth: 5 x 20 = 100
    await sync_all(first, second)
    assert rows(engines[0]) == [("key/key_a", int(T0), 5)]
    # The other learns of them once it shares hits of its own on that window (at 5), as any process
    # learns of a key it had not seen: the overshoot this allows is bounded (ratelimit.py).
    for _ in range(5):
        await second.hit_key("key_a")
    await second.sync()
    assert rows(engines[0]) == [("key/key_a", int(T0), 10)]
    assert (await second.hit_key("key_a")).remaining == 89  # 10 shared, and this one


async def test_a_sync_lists_no_window_below_a_twentieth_of_its_limit(
    make_limiter: MakeLimiter, engines: list[Engine]
) -> None:
    # With tens of thousands of keys in use, each far below its limit, listing every window hit
    # cost each request an append and each sync a walk, for windows it would not share.
    limiter = make_limiter("100/minute")
    for n in range(1000):
        await limiter.hit_key(f"key_{n}")
    for _ in range(4):
        await limiter.hit_key("key_busy")
    assert limiter._local is not None
    assert limiter._local._hit == []

    await limiter.hit_key("key_busy")  # the fifth: 5 x 20 = 100
    assert limiter._local._hit == ["key/key_busy"]
    await limiter.sync()
    assert rows(engines[0]) == [("key/key_busy", int(T0), 5)]


async def test_a_small_limit_shares_every_hit(make_limiter: MakeLimiter, engines: list[Engine]) -> None:
    first = make_limiter("19/minute")
    await first.hit_key("key_a")
    await first.sync()
    assert rows(engines[0]) == [("key/key_a", int(T0), 1)]


async def test_a_lone_process_keeps_no_list_of_the_windows_it_hit(clock: Clock) -> None:
    # Local mode never syncs: a list of what moved since the last sync would only grow.
    limiter = RateLimiter("5/minute", "3/minute", clock=clock)
    for n in range(1000):
        limiter.hit_key_now(f"key_{n}")
    assert limiter._local is not None
    assert limiter._local._hit == []
