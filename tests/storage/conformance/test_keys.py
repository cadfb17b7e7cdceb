from __future__ import annotations

import hashlib
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, event, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tests.factories import make_api_key, make_user
from thotbot.core import keys
from thotbot.core.errors import NotFound
from thotbot.core.revocation import RevokedReason
from thotbot.services import Services
from thotbot.storage.models import Account, KeyEvent

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def _sqlite_only(services: Services) -> None:
    if services.engine.dialect.name != "sqlite":
        pytest.skip("SQLite pragmas")


class TestEngine:
    def test_sqlite_is_in_wal_mode_with_foreign_keys(self, services: Services) -> None:
        _sqlite_only(services)
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


class TestCreate:
    def test_create_returns_the_raw_key_once(self, services: Services) -> None:
        account = make_user(services)

        raw, record = services.keys.create(account.id, "ci", expires_at=T0 + timedelta(days=400))

        assert keys.parse(raw).hint == record.hint == keys.hint(raw)
        assert record.id.startswith("key_")
        assert record.account_id == account.id
        assert record.name == "ci"
        assert record.read_only is False
        assert record.grants == frozenset()
        assert record.created_at.tzinfo is not None
        assert record.expires_at == T0 + timedelta(days=400)
        assert record.revoked_at is None
        assert record.last_used_at is None
        assert raw not in repr(record)

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

    def test_find_by_hash(self, services: Services) -> None:
        raw, record = make_api_key(services)

        assert services.keys.find_by_hash(keys.hash_key(raw)) == record
        assert services.keys.find_by_hash(keys.hash_key(keys.generate())) is None

    def test_find_and_get(self, services: Services) -> None:
        _, record = make_api_key(services)

        assert services.keys.find(record.id) == record
        assert services.keys.get(record.id) == record
        assert services.keys.find("key_missing") is None

    @pytest.mark.parametrize("key_id", ["key_\x00", "\x00", "k" * 33, ""])
    def test_odd_ids_are_not_found(self, services: Services, key_id: str) -> None:
        assert services.keys.find(key_id) is None
        with pytest.raises(NotFound):
            services.keys.revoke(key_id)
        with pytest.raises(NotFound):
            services.keys.grant(key_id, "account:security")

    def test_get_unknown_raises_not_found(self, services: Services) -> None:
        with pytest.raises(NotFound) as exc_info:
            services.keys.get("key_missing")

        assert exc_info.value.status == 404
        assert "key_missing" in exc_info.value.detail

    def test_list_for_account_is_newest_first_and_only_theirs(self, services: Services) -> None:
        mine, theirs = make_user(services), make_user(services)
        _, first = make_api_key(services, mine, name="first")
        _, second = make_api_key(services, mine, name="second")
        make_api_key(services, theirs)

        listed = services.keys.list_for_account(mine.id)

        assert [r.id for r in listed] == [second.id, first.id]
        assert services.keys.list_for_account("acct_missing") == []

    def test_read_only(self, services: Services) -> None:
        _, record = make_api_key(services, read_only=True)

        assert record.read_only is True
        assert services.keys.get(record.id).read_only is True


class TestChanges:
    def test_revoke_records_a_change(self, services: Services) -> None:
        _, record = make_api_key(services)
        seq = services.keys.latest_change()

        revoked = services.keys.revoke(record.id, reason=RevokedReason.OPERATOR).record

        assert revoked.revoked_at is not None
        assert revoked.state(datetime.now(UTC) + timedelta(seconds=1)) == "revoked"
        assert services.keys.get(record.id).revoked_at == revoked.revoked_at
        newest, changed = services.keys.changes_since(seq)
        assert changed == [record.id]
        assert newest > seq
        assert services.keys.latest_change() == newest
        assert services.keys.changes_since(newest) == (newest, [])

    def test_revoke_twice_changes_once(self, services: Services) -> None:
        _, record = make_api_key(services)
        first = services.keys.revoke(record.id).record
        seq = services.keys.latest_change()

        second = services.keys.revoke(record.id).record

        assert second.revoked_at == first.revoked_at
        assert services.keys.changes_since(seq) == (seq, [])

    def test_revoke_unknown_raises_not_found(self, services: Services) -> None:
        with pytest.raises(NotFound):
            services.keys.revoke("key_missing")

        assert services.keys.latest_change() == 0

    def test_revoke_by_hashes(self, services: Services) -> None:
        raw_a, a = make_api_key(services)
        _, b = make_api_key(services)
        raw_c, c = make_api_key(services)
        services.keys.revoke(c.id)
        seq = services.keys.latest_change()

        revoked = services.keys.revoke_by_hashes(
            [keys.hash_key(raw_a), keys.hash_key(raw_c), keys.hash_key(keys.generate())],
            reason=RevokedReason.LEAKED,
        )

        assert [r.id for r in revoked] == [a.id]
        assert services.keys.get(a.id).revoked_at is not None
        assert services.keys.get(b.id).revoked_at is None
        assert services.keys.changes_since(seq)[1] == [a.id]

    def test_revoke_by_no_hashes(self, services: Services) -> None:
        assert services.keys.revoke_by_hashes([], reason=RevokedReason.LEAKED) == []

    def test_grant(self, services: Services) -> None:
        _, record = make_api_key(services)
        seq = services.keys.latest_change()

        granted = services.keys.grant(record.id, "account:security").record
        again = services.keys.grant(record.id, "account:security").record

        assert granted.grants == again.grants == frozenset({"account:security"})
        assert services.keys.get(record.id).grants == frozenset({"account:security"})
        assert services.keys.changes_since(seq)[1] == [record.id]

    def test_set_expiry_and_rename(self, services: Services) -> None:
        _, record = make_api_key(services)
        seq = services.keys.latest_change()

        services.keys.set_expiry(record.id, T0)
        renamed = services.keys.rename(record.id, "renamed").record

        assert renamed.name == "renamed"
        assert renamed.expires_at == T0
        assert renamed.state(datetime.now(UTC)) == "expired"
        assert services.keys.changes_since(seq)[1] == [record.id, record.id]

    def test_changes_are_reported_in_order(self, services: Services) -> None:
        _, a = make_api_key(services)
        _, b = make_api_key(services)

        services.keys.revoke(b.id)
        services.keys.revoke(a.id)

        assert services.keys.changes_since(0)[1] == [b.id, a.id]

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


def test_times_come_back_in_utc(services: Services) -> None:
    _, record = make_api_key(services, expires_at=datetime(2030, 1, 1, 9, tzinfo=UTC))

    stored = services.keys.get(record.id)

    assert stored.expires_at == datetime(2030, 1, 1, 9, tzinfo=UTC)
    assert stored.expires_at is not None
    assert stored.expires_at.utcoffset() == timedelta(0)
    assert stored.created_at.utcoffset() == timedelta(0)
    assert abs(stored.created_at - datetime.now(UTC)) < timedelta(minutes=1)
