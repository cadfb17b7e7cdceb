"""API keys, on every store backend: lookups, numbered changes, and the security-log entry each
change writes with it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from tests.factories import make_api_key, make_user
from thotbot.core import keys
from thotbot.core.errors import NotFound
from thotbot.core.revocation import RevokedReason
from thotbot.services import Services
from thotbot.storage import EntryFor, KeyRecord, KeyStore, LogEntry
from thotbot.storage.usage import AgentCount, DayCount, UsageBatch

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


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

    def test_find_by_hash(self, services: Services) -> None:
        raw, record = make_api_key(services)

        assert services.keys.find_by_hash(keys.hash_key(raw)) == record
        assert services.keys.find_by_hash(keys.hash_key(keys.generate())) is None

    def test_find_by_hashes_answers_many_in_one_read(self, services: Services) -> None:
        raw_one, one = make_api_key(services)
        raw_two, two = make_api_key(services)
        unknown = keys.hash_key(keys.generate())
        digests = [keys.hash_key(raw_one), unknown, keys.hash_key(raw_two)]

        found = services.keys.find_by_hashes(digests)

        assert found == {keys.hash_key(raw_one): one, keys.hash_key(raw_two): two}
        assert services.keys.find_by_hashes([]) == {}

    def test_find_by_hashes_says_when_the_account_is_disabled(self, services: Services) -> None:
        raw, record = make_api_key(services)
        services.users.set_disabled(record.account_id, True)

        found = services.keys.find_by_hashes([keys.hash_key(raw)])

        assert found[keys.hash_key(raw)].account_disabled is True
        assert services.keys.find_by_hash(keys.hash_key(raw)) == found[keys.hash_key(raw)]

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

    def test_changes_since_a_number_the_log_no_longer_reaches_says_it_went_back(
        self, services: Services
    ) -> None:
        # A server that saw change 10**6 polls a database restored to a backup from before it.
        make_api_key(services)
        services.keys.revoke(make_api_key(services)[1].id)
        newest = services.keys.latest_change()

        assert services.keys.changes_since(10**6) == (newest, [])

    def test_changes_since_come_in_their_order_up_to_the_newest(self, services: Services) -> None:
        records = [make_api_key(services)[1] for _ in range(3)]
        seq = services.keys.latest_change()

        for record in (records[2], records[0], records[1]):
            services.keys.revoke(record.id)

        newest = services.keys.latest_change()
        assert services.keys.changes_since(seq) == (newest, [records[2].id, records[0].id, records[1].id])
        assert services.keys.changes_since(newest - 1) == (newest, [records[1].id])

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

    def test_allowed_networks(self, services: Services) -> None:
        raw, record = make_api_key(services)
        assert record.allowed_networks == ()
        seq = services.keys.latest_change()
        entries: list[str] = []

        def log(r: KeyRecord) -> LogEntry:
            entries.append(" ".join(r.allowed_networks))
            return LogEntry(r.account_id, "key.networks_changed", key_id=r.id, actor="operator")

        changed = services.keys.set_allowed_networks(record.id, ("192.0.2.0/24", "::1/128"), log=log)
        again = services.keys.set_allowed_networks(record.id, ("192.0.2.0/24", "::1/128"), log=log)

        assert changed.changed
        assert not again.changed
        assert changed.record.allowed_networks == ("192.0.2.0/24", "::1/128")
        assert services.keys.find_by_hash(keys.hash_key(raw)).allowed_networks == ("192.0.2.0/24", "::1/128")  # type: ignore[union-attr]
        assert services.keys.changes_since(seq)[1] == [record.id]
        assert entries == ["192.0.2.0/24 ::1/128"]
        assert [e.action for e in services.security_log.list_for_account(record.account_id)] == [
            "key.networks_changed"
        ]

        cleared = services.keys.set_allowed_networks(record.id, ())
        assert cleared.changed
        assert services.keys.get(record.id).allowed_networks == ()
        with pytest.raises(NotFound):
            services.keys.set_allowed_networks("key_missing", ("192.0.2.0/24",))

    def test_rate_limit(self, services: Services) -> None:
        _, record = make_api_key(services)
        assert record.rate_limit is None
        seq = services.keys.latest_change()

        changed = services.keys.set_rate_limit(record.id, "3/minute")
        again = services.keys.set_rate_limit(record.id, "3/minute")

        assert changed.changed
        assert not again.changed
        assert services.keys.get(record.id).rate_limit == "3/minute"
        assert [r.rate_limit for r in services.keys.list_for_account(record.account_id)] == ["3/minute"]
        assert services.keys.changes_since(seq)[1] == [record.id]
        assert services.keys.set_rate_limit(record.id, None).record.rate_limit is None
        with pytest.raises(NotFound):
            services.keys.set_rate_limit("key_missing", "3/minute")

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

    def test_revoke_by_hashes_revokes_expired_keys_too(self, services: Services) -> None:
        raw, record = make_api_key(services, expires_at=T0)

        [revoked] = services.keys.revoke_by_hashes([keys.hash_key(raw)], reason=RevokedReason.LEAKED)

        assert revoked.id == record.id
        assert revoked.revoked_reason == RevokedReason.LEAKED
        assert services.keys.get(record.id).revoked_at == revoked.revoked_at

    def test_roll(self, services: Services) -> None:
        _, old = make_api_key(services, name="ci", read_only=True)
        seq = services.keys.latest_change()

        raw, new, replaced = services.keys.roll(old.id, expires_at=T0 + timedelta(days=90), old_expires_at=T0)

        assert (new.account_id, new.name, new.read_only) == (old.account_id, "ci", True)
        assert new.id != old.id
        assert new.expires_at == T0 + timedelta(days=90)
        assert services.keys.find_by_hash(keys.hash_key(raw)) == new
        assert replaced == services.keys.get(old.id)
        assert replaced.expires_at == T0
        assert [r.id for r in services.keys.list_for_account(old.account_id)] == [new.id, old.id]
        assert services.keys.changes_since(seq)[1] == [old.id]

    def test_a_rolled_key_keeps_the_operators_allowlist_and_limit(self, services: Services) -> None:
        _, old = make_api_key(services)
        services.keys.set_allowed_networks(old.id, ("192.0.2.0/24", "::1/128"))
        services.keys.set_rate_limit(old.id, "3/minute")

        raw, new, _ = services.keys.roll(old.id, expires_at=None, old_expires_at=T0)

        assert new.allowed_networks == ("192.0.2.0/24", "::1/128")
        assert new.rate_limit == "3/minute"
        assert services.keys.find_by_hash(keys.hash_key(raw)) == new

    def test_roll_unknown_raises_not_found(self, services: Services) -> None:
        with pytest.raises(NotFound):
            services.keys.roll("key_missing", expires_at=None, old_expires_at=T0)

        assert services.keys.latest_change() == 0

    def test_announce_account_change(self, services: Services) -> None:
        account = make_user(services)
        _, a = make_api_key(services, account)
        _, b = make_api_key(services, account)
        make_api_key(services)

        announced = services.keys.announce_account_change(account.id)

        assert sorted(announced) == sorted([a.id, b.id])
        assert sorted(services.keys.changes_since(0)[1]) == sorted([a.id, b.id])
        assert services.keys.announce_account_change("acct_missing") == []


class TestAccount:
    def test_find_by_hash_tells_whether_the_account_is_disabled(self, services: Services) -> None:
        raw, record = make_api_key(services)

        services.users.set_disabled(record.account_id, True)
        disabled = services.keys.find_by_hash(keys.hash_key(raw))
        services.users.set_disabled(record.account_id, False)
        enabled = services.keys.find_by_hash(keys.hash_key(raw))

        assert disabled is not None
        assert disabled.account_disabled is True
        assert enabled == record

    def test_deleting_an_account_deletes_its_keys_and_their_usage(self, services: Services) -> None:
        stale = services.users.create("stale@example.com", None, verified=False)
        raw, gone = make_api_key(services, stale)
        _, kept = make_api_key(services)
        for key in (gone, kept):
            services.usage.write(
                UsageBatch(
                    days=[DayCount(key.id, T0.date(), 1)], agents=[AgentCount(key.id, "a/1", T0, T0, 1)]
                )
            )

        assert services.users.delete_unverified(datetime.now(UTC) + timedelta(hours=1)) == 1

        assert services.keys.find(gone.id) is None
        assert services.keys.find_by_hash(keys.hash_key(raw)) is None
        assert services.keys.list_for_account(stale.id) == []
        assert services.usage.daily(gone.id, T0.date()) == {}
        assert services.usage.agents(gone.id) == []
        assert [k.key.id for k in services.usage.integrations()] == [kept.id]
        assert services.keys.get(kept.id) == kept


def _entry(action: str) -> EntryFor:
    def entry(record: KeyRecord) -> LogEntry:
        return LogEntry(record.account_id, action, "operator", key_id=record.id, detail=record.name)

    return entry


def _refused(record: KeyRecord) -> LogEntry:
    raise RuntimeError("the security log refused the entry")


#: Each change, given how to make its log entry: (store, key, its raw key, entry for).
CHANGES: dict[str, Callable[[KeyStore, KeyRecord, str, EntryFor], object]] = {
    "create": lambda store, key, _, log: store.create(key.account_id, "another", log=log),
    "roll": lambda store, key, _, log: store.roll(
        key.id, expires_at=None, old_expires_at=T0, log=lambda new, old: [log(new), log(old)]
    ),
    "rename": lambda store, key, _, log: store.rename(key.id, "renamed", log=log),
    "set_expiry": lambda store, key, _, log: store.set_expiry(key.id, T0, log=log),
    "grant": lambda store, key, _, log: store.grant(key.id, "account:security", log=log),
    "revoke": lambda store, key, _, log: store.revoke(key.id, log=log),
    "revoke_by_hashes": lambda store, _, raw, log: store.revoke_by_hashes(
        [keys.hash_key(raw)], reason=RevokedReason.LEAKED, log=log
    ),
}


class TestLogEntries:
    """Each change writes its security-log entry with it: once, only when something changed, and
    not at all (the change with it) when the entry cannot be made."""

    @pytest.mark.parametrize("change", CHANGES)
    def test_a_change_writes_its_entry(self, services: Services, change: str) -> None:
        raw, record = make_api_key(services)

        CHANGES[change](services.keys, record, raw, _entry(f"key.{change}"))

        events = services.security_log.list_for_account(record.account_id)
        assert {e.action for e in events} == {f"key.{change}"}
        assert len(events) == (2 if change == "roll" else 1)
        assert all(e.actor == "operator" for e in events)
        assert {e.key_id for e in events} <= {k.id for k in services.keys.list_for_account(record.account_id)}

    @pytest.mark.parametrize("change", ["grant", "revoke", "revoke_by_hashes"])
    def test_a_change_that_changes_nothing_writes_no_entry(self, services: Services, change: str) -> None:
        raw, record = make_api_key(services)
        CHANGES[change](services.keys, record, raw, _entry("key.first"))

        CHANGES[change](services.keys, record, raw, _entry("key.again"))

        events = services.security_log.list_for_account(record.account_id)
        assert [e.action for e in events] == ["key.first"]

    @pytest.mark.parametrize("change", CHANGES)
    def test_a_change_whose_entry_fails_is_not_made(self, services: Services, change: str) -> None:
        raw, record = make_api_key(services)
        seq = services.keys.latest_change()

        with pytest.raises(RuntimeError):
            CHANGES[change](services.keys, record, raw, _refused)

        assert services.keys.list_for_account(record.account_id) == [record]
        assert services.keys.latest_change() == seq
        assert services.security_log.list_for_account(record.account_id) == []

    def test_entries_are_redacted(self, services: Services) -> None:
        raw, record = make_api_key(services)

        def leaky(key: KeyRecord) -> LogEntry:
            return LogEntry(key.account_id, "key.renamed", f"by {raw}", key_id=key.id, detail=f"was {raw}")

        services.keys.rename(record.id, "renamed", log=leaky)

        [event] = services.security_log.list_for_account(record.account_id)
        assert raw not in event.actor
        assert raw not in event.detail
        assert event.detail.startswith("was thot_ak_")


def test_times_come_back_in_utc(services: Services) -> None:
    _, record = make_api_key(services, expires_at=datetime(2030, 1, 1, 9, tzinfo=UTC))

    stored = services.keys.get(record.id)

    assert stored.expires_at == datetime(2030, 1, 1, 9, tzinfo=UTC)
    assert stored.expires_at is not None
    assert stored.expires_at.utcoffset() == timedelta(0)
    assert stored.created_at.utcoffset() == timedelta(0)
    assert abs(stored.created_at - datetime.now(UTC)) < timedelta(minutes=1)
