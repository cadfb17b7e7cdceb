"""Applying migrations while another process does: instances started together all migrate at start."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest
from sqlalchemy import Connection, Engine, event

from tests.services import PG_ADMIN_URL, postgres_database
from thotbot.storage.db import make_engine
from thotbot.storage.migrate import current_revision, head_revision, upgrade


@pytest.mark.postgres
def test_a_second_migration_waits_for_the_first_and_finds_nothing_to_do() -> None:
    with postgres_database() as url:  # empty: every migration is pending
        first, second = make_engine(url), make_engine(url)
        committing, commit = threading.Event(), threading.Event()

        @event.listens_for(first, "commit")
        def _hold(connection: Connection) -> None:
            # The first has applied every migration and is about to commit: hold it there.
            committing.set()
            commit.wait(30)

        errors: list[Exception] = []

        def migrate(engine: Engine) -> None:
            try:
                upgrade(engine)
            except Exception as exc:  # reported below, with the other thread's
                errors.append(exc)

        threads = [threading.Thread(target=migrate, args=(engine,)) for engine in (first, second)]
        threads[0].start()
        assert committing.wait(60)
        threads[1].start()
        _wait_until_one_waits_for_a_lock(url.rsplit("/", 1)[1])
        commit.set()
        for thread in threads:
            thread.join(60)
        revision = current_revision(second)
        first.dispose()
        second.dispose()

    assert errors == []
    assert revision == head_revision()


def _wait_until_one_waits_for_a_lock(database: str) -> None:
    query = "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock'"
    deadline = time.monotonic() + 30
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        while admin.execute(query, (database,)).fetchone() != (1,):
            assert time.monotonic() < deadline, "the second migration never waited for the first"
            time.sleep(0.01)
