"""On SQLite the flushes hand the driver rows they convert themselves (``_DriverRows``): what lands in
the database must be byte for byte what SQLAlchemy's own ``Connection.execute`` would have written.

Each example writes the same usage and request-log batches, twice (the second time the upserts
update what the first inserted), into two copies of one database: once as the stores do, once with
every executemany sent through ``Connection.execute`` instead. The tables are then compared as
SQLite holds them (text, numbers, blobs), read with the plain sqlite3 module.
"""

from __future__ import annotations

import shutil
import sqlite3
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.factories import make_api_key
from thotbot.config import load_settings
from thotbot.services import build_services
from thotbot.storage import KeyUsage, request_log, usage
from thotbot.storage.db import make_engine, make_session_factory
from thotbot.storage.request_log import HourCount, RequestEntry, RequestLogBatch, SQLRequestLog
from thotbot.storage.usage import AgentCount, ClientCount, DayCount, SQLUsageStore, UsageBatch

TABLES = ("usage_days", "usage_agents", "usage_clients", "api_keys", "key_requests", "key_request_hours")


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory, _sqlite_template: Path) -> tuple[Path, list[str]]:
    """A migrated database holding three keys, and their ids."""
    path = tmp_path_factory.mktemp("rows") / "seed.db"
    shutil.copyfile(_sqlite_template, path)
    services = build_services(load_settings(database_url=f"sqlite:///{path}"))
    key_ids = [make_api_key(services)[1].id for _ in range(3)]
    with services.engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    services.engine.dispose()
    return path, key_ids


_TIMES = st.datetimes(
    min_value=datetime(2000, 1, 1),
    max_value=datetime(2100, 1, 1),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]),
)
_TEXT = st.text(max_size=12)
_DAYS = st.dates(min_value=date(2000, 1, 1), max_value=date(2100, 1, 1))


@st.composite
def _batches(draw: st.DrawFn, key_ids: list[str]) -> tuple[UsageBatch, RequestLogBatch]:
    keys = st.sampled_from([*key_ids, "key_gone"])  # a key that does not exist is dropped
    days = draw(
        st.lists(st.builds(DayCount, keys, _DAYS, st.integers(1, 10**6), st.integers(0, 5)), max_size=6)
    )
    agents = draw(
        st.lists(
            st.builds(AgentCount, keys, st.none() | _TEXT, _TIMES, _TIMES, st.integers(1, 10**6)), max_size=6
        )
    )
    clients = draw(
        st.lists(st.builds(ClientCount, keys, _DAYS, st.binary(min_size=16, max_size=16), st.integers(1, 99)))
    )
    last_used = draw(st.dictionaries(keys, st.builds(KeyUsage, _TIMES, st.none() | _TEXT), max_size=4))
    requests = draw(
        st.lists(
            st.builds(
                RequestEntry,
                keys,
                _TIMES,
                st.sampled_from(["GET", "POST"]),
                _TEXT,
                st.integers(100, 599),
                st.none() | _TEXT,
                st.none() | _TEXT,
                st.integers(0, 2**31 - 1),
            ),
            max_size=6,
        )
    )
    hours = draw(
        st.lists(
            st.builds(
                HourCount,
                keys,
                _TIMES.map(lambda t: t.replace(minute=0, second=0, microsecond=0)),
                st.sampled_from(["GET /v1/version", "GET (other)"]),
                st.sampled_from(["", "invalid_api_key"]),
                st.integers(1, 10**6),
                _TIMES,
                _TIMES,
                st.none() | _TEXT,
            ),
            max_size=6,
        )
    )
    return UsageBatch(days, agents, clients, last_used), RequestLogBatch(requests, hours)


def _through_execute(session: Any, stmt: Any, params: list[dict[str, Any]]) -> None:
    """SQLAlchemy's own way: every row's parameters built and converted by ``execute``."""
    if params:
        session.connection().execute(stmt, params)


def _write(path: Path, batches: tuple[UsageBatch, RequestLogBatch]) -> None:
    engine = make_engine(f"sqlite:///{path}")
    try:
        sessions = make_session_factory(engine)
        for _ in range(2):
            SQLUsageStore(sessions).write(batches[0])
            SQLRequestLog(sessions).write(batches[1])
    finally:
        engine.dispose()


def _dump(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    with sqlite3.connect(path) as db:
        return {
            table: sorted(db.execute(f"SELECT * FROM {table}").fetchall(), key=repr)  # noqa: S608
            for table in TABLES
        }


def test_the_driver_rows_are_what_execute_would_have_sent(
    seeded: tuple[Path, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed, key_ids = seeded

    @settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(_batches(key_ids))
    def check(batches: tuple[UsageBatch, RequestLogBatch]) -> None:
        fast, plain = tmp_path / "fast.db", tmp_path / "plain.db"
        for path in (fast, plain):
            shutil.copyfile(seed, path)
        _write(fast, batches)
        with monkeypatch.context() as patch:
            patch.setattr(usage, "_execute_chunked", _through_execute)
            patch.setattr(request_log, "_execute_chunked", _through_execute)
            _write(plain, batches)
        assert _dump(fast) == _dump(plain)

    check()


def test_times_are_stored_as_sqlalchemy_stores_them(seeded: tuple[Path, list[str]], tmp_path: Path) -> None:
    # The driver's own adapter would have stored "2026-01-02 03:04:05.000006+05:30": another text,
    # which compares wrongly with the rest of the column.
    seed, key_ids = seeded
    path = tmp_path / "times.db"
    shutil.copyfile(seed, path)
    at = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    _write(
        path,
        (
            UsageBatch(
                agents=[AgentCount(key_ids[0], "acme/1.0", at, at, 1)],
                last_used={key_ids[0]: KeyUsage(at, None)},
            ),
            RequestLogBatch(),
        ),
    )
    with sqlite3.connect(path) as db:
        stored = db.execute("SELECT first_seen, last_seen FROM usage_agents").fetchall()
        used = db.execute("SELECT last_used_at FROM api_keys WHERE id = ?", (key_ids[0],)).fetchone()
    assert stored == [("2026-01-01 21:34:05.000006", "2026-01-01 21:34:05.000006")]
    assert used == ("2026-01-01 21:34:05.000006",)
