"""The usage flush on PostgreSQL: a few constant statements whatever the batch's size, and exact rows.

With tens of thousands of keys in use, one statement a row (executemany) cost the server seconds of
a worker thread every flush. Each table now takes one statement per 5,000 rows, its columns sent as
arrays; the statements are counted here as the engine sends them, and the rows read back as stored.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import event, select

from tests.factories import make_api_key
from thotbot.config import load_settings
from thotbot.services import Services, build_services
from thotbot.storage import KeyUsage
from thotbot.storage.models import KeyRequestHour, UsageClient
from thotbot.storage.usage import AgentCount, ClientCount, DayCount, UsageBatch

pytestmark = pytest.mark.postgres

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
DAY = date(2026, 5, 1)
ROWS = 10_001  # two full statements of 5,000 rows and one of a single row


@pytest.fixture
def services(postgres_url: str) -> Iterator[Services]:
    services = build_services(load_settings(database_url=postgres_url))
    yield services
    services.engine.dispose()


@pytest.fixture
def statements(services: Services) -> Iterator[list[tuple[str, bool]]]:
    """Every statement the engine sends, with whether it went as an executemany."""
    seen: list[tuple[str, bool]] = []

    def record(
        conn: object, cursor: object, statement: str, params: object, context: object, many: bool
    ) -> None:
        seen.append((statement, many))

    event.listen(services.engine, "before_cursor_execute", record)
    yield seen
    event.remove(services.engine, "before_cursor_execute", record)


def _target(statement: str) -> str:
    """What a statement acts on: INSERT INTO usage_days, UPDATE api_keys SET, SELECT id FROM api_keys..."""
    words = statement.split()
    return " ".join(words[:3] if words[0] != "SELECT" else words[:4])


def test_a_large_flush_is_a_few_constant_statements(
    services: Services, statements: list[tuple[str, bool]]
) -> None:
    _, key = make_api_key(services)
    _, other = make_api_key(services)
    batch = UsageBatch(
        days=[DayCount(key.id, DAY - timedelta(days=n), 1) for n in range(ROWS)],
        agents=[AgentCount(key.id, f"app{n}/1.0", T0, T0, 1) for n in range(ROWS)],
        clients=[ClientCount(key.id, DAY, n.to_bytes(16, "big"), 1) for n in range(ROWS)],
        last_used={key.id: KeyUsage(T0, "app0/1.0"), other.id: KeyUsage(T0, None)},
    )
    statements.clear()  # the keys' own statements

    services.usage.write(batch)

    sent = [(_target(s), s, many) for s, many in statements if "usage_" in s or "api_keys" in s]
    assert not [s for _, s, many in sent if many]
    assert Counter(target for target, _, _ in sent) == {
        "SELECT id FROM api_keys": 1,
        "INSERT INTO usage_days": 3,
        "INSERT INTO usage_agents": 3,
        "INSERT INTO usage_clients": 3,
        "UPDATE api_keys SET": 1,
    }
    # The same text every time: one plan, whatever the batch.
    for target in ("INSERT INTO usage_days", "INSERT INTO usage_agents", "INSERT INTO usage_clients"):
        assert len({s for t, s, _ in sent if t == target}) == 1
    assert len(services.usage.agents(key.id)) == ROWS
    assert sum(services.usage.daily(key.id, DAY - timedelta(days=ROWS)).values()) == ROWS
    assert services.usage.distinct_clients(key.id, DAY) == ROWS
    assert services.keys.get(other.id).last_used_at == T0


def test_client_hashes_are_stored_byte_for_byte(services: Services) -> None:
    # Bytes that array syntax means something by: a quote, a backslash, a comma, braces, NUL.
    _, key = make_api_key(services)
    hashes = sorted({b'"\\,{}\x00' + bytes([n]) * 10 for n in range(256)})

    services.usage.write(UsageBatch(clients=[ClientCount(key.id, DAY, h, 1) for h in hashes]))

    with services.engine.connect() as connection:
        stored = connection.scalars(select(UsageClient.client_hash).where(UsageClient.key_id == key.id))
        assert sorted(bytes(h) for h in stored) == hashes


def test_last_use_of_many_keys_moves_only_forward(services: Services) -> None:
    keys = [make_api_key(services)[1] for _ in range(6)]
    earlier, later = T0 - timedelta(minutes=1), T0 + timedelta(minutes=1)
    services.usage.write(UsageBatch(last_used={k.id: KeyUsage(T0, "first/1") for k in keys}))

    services.usage.write(
        UsageBatch(
            last_used={k.id: KeyUsage(earlier if n % 2 else later, f"second/{n}") for n, k in enumerate(keys)}
        )
    )

    stored = [services.keys.get(k.id) for k in keys]
    assert [(s.last_used_at, s.last_user_agent) for s in stored] == [
        (T0, "first/1") if n % 2 else (later, f"second/{n}") for n in range(6)
    ]


def test_the_request_log_is_a_few_constant_statements_and_exact(
    services: Services, statements: list[tuple[str, bool]]
) -> None:
    """The request log's flush on PostgreSQL: arrays too, and every odd character comes back as sent."""
    from thotbot.storage.request_log import HourCount, RequestEntry, RequestLogBatch

    _, key = make_api_key(services)
    odd = ['a "quoted", {braced} path', "back\\slash", "NULL", "", "ünï ✓"]
    requests = [
        RequestEntry(
            key.id, T0 + timedelta(microseconds=n), "GET", f"/v1/{odd[n % 5]}", 200, None, odd[n % 5], n
        )
        for n in range(ROWS)
    ]
    hours = [HourCount(key.id, T0, f"GET {odd[n % 5]}/{n}", "", 1, T0, T0, odd[n % 5]) for n in range(ROWS)]
    # The same hour row twice in one batch: added up, not refused.
    hours.append(HourCount(key.id, T0, f"GET {odd[0]}/0", "", 2, T0 - timedelta(minutes=1), T0, "later"))
    statements.clear()

    services.request_log.write(RequestLogBatch(requests=requests, hours=hours))

    writes = Counter(" ".join(s.split()[:3]) for s, many in statements if s.startswith("INSERT"))
    assert writes == {"INSERT INTO key_requests": 3, "INSERT INTO key_request_hours": 3}
    assert not any(many for _, many in statements)
    newest = services.request_log.recent(key.id, 5)
    assert [(r.path, r.user_agent) for r in newest] == [
        (f"/v1/{odd[n % 5]}", odd[n % 5]) for n in range(ROWS - 1, ROWS - 6, -1)
    ]
    with services.db() as session:
        stored = session.scalars(select(KeyRequestHour).where(KeyRequestHour.key_id == key.id)).all()
    assert len(stored) == ROWS
    assert {h.endpoint for h in stored} == {f"GET {odd[n % 5]}/{n}" for n in range(ROWS)}
    [twice] = [h for h in stored if h.endpoint == f"GET {odd[0]}/0"]
    assert (twice.requests, twice.first_seen, twice.user_agent) == (3, T0 - timedelta(minutes=1), "later")


def test_the_request_logs_errors_read_back_what_the_flush_wrote(services: Services) -> None:
    from thotbot.storage.request_log import HourCount, RequestLogBatch

    _, key = make_api_key(services)
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    rows = [
        HourCount(key.id, hour, "GET /v1/keys/{key_id}/requests", "not_found", 2, hour, hour, "a/1"),
        HourCount(key.id, hour, "GET /v1/version", "", 5, hour, hour, "a/1"),
    ]
    services.request_log.write(RequestLogBatch(hours=rows))

    [group] = services.request_log.errors(key.id, hour - timedelta(hours=24))
    assert (group.endpoint, group.code, group.requests) == ("GET /v1/keys/{key_id}/requests", "not_found", 2)
