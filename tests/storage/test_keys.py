"""What the SQL key store keeps and how it holds under concurrency: pragmas, foreign keys, the
stored row, the order of numbered changes. The behaviour every backend shares is in
tests/storage/conformance/test_keys.py."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, event, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tests.factories import make_api_key
from thotbot.services import Services
from thotbot.storage.models import Account, KeyEvent


class TestEngine:
    @pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # SQLite pragmas
    def test_sqlite_is_in_wal_mode_with_foreign_keys(self, services: Services) -> None:
        assert services.engine.dialect.name == "sqlite"
        make_api_key(services)

        with services.engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 15000
        database = services.engine.url.database
        assert database is not None
        assert Path(database + "-wal").exists()

    def test_foreign_keys_are_enforced(self, services: Services) -> None:
        with pytest.raises(IntegrityError):
            services.keys.create("acct_missing", "orphan")

    def test_deleting_an_account_deletes_its_keys(self, services: Services) -> None:
        _, record = make_api_key(services)

        with services.db.begin() as session:
            session.execute(delete(Account).where(Account.id == record.account_id))

        assert services.keys.find(record.id) is None


class TestSQLKeyStore:
    def test_only_the_hash_is_stored(self, services: Services) -> None:
        raw, _ = make_api_key(services)

        with services.engine.connect() as connection:
            rows = connection.execute(text("SELECT * FROM api_keys")).all()

        [row] = rows
        stored = row._asdict()
        assert bytes(stored["key_hash"]) == hashlib.sha256(raw.encode()).digest()
        body = raw[len("thot_ak_") :]
        for value in stored.values():
            text_value = value.hex() if isinstance(value, bytes | memoryview) else str(value)
            assert raw not in text_value
            assert body not in text_value
            assert body[:32] not in text_value

    def test_no_change_is_missed_when_transactions_commit_out_of_order(self, services: Services) -> None:
        """A change numbered before another but committed after it must still reach the pollers.

        The first revocation is held open after its change row is written (so it has its number),
        while a second one runs; a poller that reads in between must not skip past the first.
        """
        _, first = make_api_key(services)
        _, second = make_api_key(services)
        written, release = threading.Event(), threading.Event()

        def hold_first(session: Session, _context: Any) -> None:
            if threading.current_thread().name == "first" and any(
                isinstance(obj, KeyEvent) for obj in session.new
            ):
                written.set()
                release.wait(10)

        event.listen(Session, "after_flush", hold_first)
        try:
            threads = [
                threading.Thread(target=services.keys.revoke, args=(first.id,), name="first"),
                threading.Thread(target=services.keys.revoke, args=(second.id,), name="second"),
            ]
            threads[0].start()
            assert written.wait(10)
            threads[1].start()
            threads[1].join(0.5)  # the second may finish now, or wait for the first: both are fine
            seen, changed = services.keys.changes_since(0)
            release.set()
            for thread in threads:
                thread.join(20)
        finally:
            release.set()
            event.remove(Session, "after_flush", hold_first)

        _, later = services.keys.changes_since(seen)
        assert sorted(changed + later) == sorted([first.id, second.id])
