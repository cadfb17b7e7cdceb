"""KeyLifecycle: each change and its security-log entry commit together, once, on a real database."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from tests.factories import make_api_key, make_user
from tests.live import start_server
from tests.smtp import Inbox
from thotbot.config import Settings, load_settings
from thotbot.core.dates import utcnow
from thotbot.core.errors import Conflict, NotFound, ValidationFailed
from thotbot.core.identity import Actor
from thotbot.core.revocation import RevokedReason
from thotbot.services import Services
from thotbot.storage import KeyChange, KeyRecord
from thotbot.storage.security_log import SecurityEventRecord

BROWSER = Actor.session("ses_0123456789abcdef", "192.0.2.7", "Firefox/126.0")
REPORTER = Actor("revoke-leaked", "192.0.2.9", "scanner/2")
RACERS = 8


@pytest.fixture
def settings(database_url: str, inbox: Inbox) -> Settings:
    return load_settings(database_url=database_url, smtp_url=inbox.url, public_url="https://thotbot.example")


@pytest.fixture(autouse=True)
def _deliver_everything(services: Services, inbox: Inbox) -> Iterator[None]:
    """Every mail a test sends is delivered before its server stops."""
    yield
    assert services.mailer.flush(10)


def _events(services: Services, account_id: str) -> list[SecurityEventRecord]:
    return services.security_log.list_for_account(account_id)


def _mails(services: Services, inbox: Inbox, to: str) -> int:
    assert services.mailer.flush(10)
    return len(inbox.to(to))


def _race(calls: int, call: Callable[[], object]) -> list[object]:
    """Run ``call`` in that many threads at once; return what each returned."""
    barrier = threading.Barrier(calls)
    results: list[object] = []
    errors: list[BaseException] = []

    def run() -> None:
        barrier.wait(10)
        try:
            results.append(call())
        except BaseException as exc:  # reported below, in the test's own thread
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert len(results) == calls
    return results


class TestConcurrentRevocations:
    def test_the_owner_revoking_at_once_is_logged_once(self, services: Services, inbox: Inbox) -> None:
        account = make_user(services)
        _, record = make_api_key(services, account)

        changes = _race(RACERS, lambda: services.key_lifecycle.revoke(account.id, record.id, BROWSER))

        assert sum(isinstance(c, KeyChange) and c.changed for c in changes) == 1
        assert [e.action for e in _events(services, account.id)] == ["key.revoked"]
        assert services.keys.get(record.id).revoked_reason == RevokedReason.OWNER
        assert _mails(services, inbox, account.email) == 0  # revoking one's own key sends no mail

    def test_the_operator_revoking_at_once_is_logged_once(self, services: Services) -> None:
        account = make_user(services)
        _, record = make_api_key(services, account)

        changes = _race(RACERS, lambda: services.key_lifecycle.revoke_as_operator(record.id))

        assert sum(isinstance(c, KeyChange) and c.changed for c in changes) == 1
        [event] = _events(services, account.id)
        assert (event.action, event.actor) == ("key.revoked", "operator")

    def test_leak_reports_at_once_are_logged_and_mailed_once(self, services: Services, inbox: Inbox) -> None:
        account = make_user(services)
        raw, record = make_api_key(services, account)
        seq = services.keys.latest_change()

        revoked = _race(RACERS, lambda: services.key_lifecycle.revoke_leaked([raw], REPORTER))

        assert sorted(len(r) for r in revoked if isinstance(r, list)) == [0] * (RACERS - 1) + [1]
        assert [e.action for e in _events(services, account.id)] == ["key.revoked_leaked"]
        assert services.keys.changes_since(seq)[1] == [record.id]
        assert services.mailer.flush(10)
        subjects = [m.message["Subject"] for m in inbox.to(account.email)]
        assert subjects.count("[Thotbot] An API key was reported as leaked and revoked") == 1

    def test_owner_operator_and_reports_at_once_revoke_once(self, services: Services) -> None:
        account = make_user(services)
        raw, record = make_api_key(services, account)
        calls: list[Callable[[], object]] = [
            lambda: services.key_lifecycle.revoke(account.id, record.id, BROWSER),
            lambda: services.key_lifecycle.revoke_as_operator(record.id),
            lambda: services.key_lifecycle.revoke_leaked([raw], REPORTER),
        ]
        turn = iter(range(RACERS * 2))
        lock = threading.Lock()

        def next_call() -> object:
            with lock:
                index = next(turn)
            return calls[index % len(calls)]()

        _race(RACERS, next_call)

        events = [e.action for e in _events(services, account.id)]
        assert len(events) == 1
        assert events[0] in ("key.revoked", "key.revoked_leaked")


class TestThroughTheLiveAPI:
    def test_concurrent_requests_revoke_and_log_once(
        self, database_url: str, inbox: Inbox, services: Services, tmp_path: Path
    ) -> None:
        account = make_user(services)
        leaked_raw, leaked = make_api_key(services, account, name="leaked")
        caller_raw, _ = make_api_key(services, account, name="caller")
        _, target = make_api_key(services, account, name="target")
        server = start_server(tmp_path, {"THOTBOT_DATABASE_URL": database_url, "THOTBOT_SMTP_URL": inbox.url})
        try:
            with httpx.Client(base_url=server.url, timeout=30) as client:
                reports = _race(
                    RACERS,
                    lambda: client.post("/v1/keys/revoke-leaked", json={"keys": [leaked_raw]}).status_code,
                )
                deletes = _race(
                    RACERS,
                    lambda: (
                        client.delete(
                            f"/v1/keys/{target.id}", headers={"Authorization": f"Bearer {caller_raw}"}
                        ).status_code
                    ),
                )
            assert reports == [202] * RACERS
            assert deletes == [204] * RACERS
            inbox.wait_for(1)  # the one about the leak
        finally:
            server.stop()

        events = _events(services, account.id)
        assert sorted((e.action, e.key_id) for e in events) == [
            ("key.revoked", target.id),
            ("key.revoked_leaked", leaked.id),
        ]
        subjects = [m.message["Subject"] for m in inbox.to(account.email)]
        assert subjects.count("[Thotbot] An API key was reported as leaked and revoked") == 1


# One test per operation: the change and its entry are both there.


class TestOperations:
    def test_create(self, services: Services, inbox: Inbox) -> None:
        account = make_user(services)

        raw, record = services.key_lifecycle.create(account.id, "ci", BROWSER, read_only=True)

        assert raw.startswith("thot" + "_ak_")
        assert services.keys.get(record.id).read_only is True
        [event] = _events(services, account.id)
        assert (event.action, event.key_id, event.actor) == ("key.created", record.id, BROWSER.who)
        assert event.detail == f"created 'ci' ({record.hint}), read-only, expires never, on the dashboard"
        assert (event.ip_address, event.user_agent) == (BROWSER.ip_address, BROWSER.user_agent)
        assert _mails(services, inbox, account.email) == 1

    def test_roll(self, services: Services, inbox: Inbox) -> None:
        account = make_user(services)
        _, old = make_api_key(services, account, name="ci", expires_at=utcnow() + timedelta(days=30))

        rolled = services.key_lifecycle.roll(account.id, old.id, BROWSER, old_expires_in=timedelta(hours=1))

        assert rolled.new.name == "ci"
        assert rolled.new.expires_at is not None
        assert abs(rolled.new.expires_at - (utcnow() + timedelta(days=30))) < timedelta(minutes=1)
        assert rolled.old.expires_at is not None
        assert rolled.old.expires_at - utcnow() < timedelta(hours=1)
        assert services.keys.get(old.id).expires_at == rolled.old.expires_at
        events = {e.action: e for e in _events(services, account.id)}
        assert (events["key.created"].key_id, events["key.rolled"].key_id) == (rolled.new.id, old.id)
        assert f"replaces {old.id}" in events["key.created"].detail
        assert _mails(services, inbox, account.email) == 1  # about the replacement

    def test_roll_never_pushes_the_expiry_back(self, services: Services) -> None:
        account = make_user(services)
        soon = utcnow() + timedelta(minutes=5)
        _, old = make_api_key(services, account, expires_at=soon)

        rolled = services.key_lifecycle.roll(account.id, old.id, BROWSER, old_expires_in=timedelta(days=7))

        assert rolled.old.expires_at == soon

    def test_roll_refuses_a_revoked_key(self, services: Services) -> None:
        account = make_user(services)
        _, old = make_api_key(services, account)
        services.key_lifecycle.revoke(account.id, old.id, BROWSER)

        with pytest.raises(Conflict):
            services.key_lifecycle.roll(account.id, old.id, BROWSER, old_expires_in=timedelta(hours=1))

        assert len(services.keys.list_for_account(account.id)) == 1

    def test_rename(self, services: Services) -> None:
        account = make_user(services)
        _, record = make_api_key(services, account, name="old")

        change = services.key_lifecycle.rename(account.id, record.id, "new", BROWSER)

        assert change.changed
        assert services.keys.get(record.id).name == "new"
        [event] = _events(services, account.id)
        assert (event.action, event.detail) == ("key.renamed", f"'old' -> 'new' ({record.hint})")

    def test_set_expiry(self, services: Services) -> None:
        account = make_user(services)
        _, record = make_api_key(services, account)
        when = (utcnow() + timedelta(days=2)).replace(second=0, microsecond=0)

        services.key_lifecycle.set_expiry(account.id, record.id, when, BROWSER)

        assert services.keys.get(record.id).expires_at == when
        [event] = _events(services, account.id)
        assert event.action == "key.expiry_changed"
        assert when.strftime("%Y-%m-%d %H:%M UTC") in event.detail

    def test_grant(self, services: Services) -> None:
        account = make_user(services)
        _, record = make_api_key(services, account)

        first = services.key_lifecycle.grant(record.id, "account:security", Actor.operator())
        again = services.key_lifecycle.grant(record.id, "account:security", Actor.operator())

        assert (first.changed, again.changed) == (True, False)
        assert services.keys.get(record.id).grants == frozenset({"account:security"})
        assert [(e.action, e.actor) for e in _events(services, account.id)] == [("key.granted", "operator")]

    def test_grant_refuses_an_unknown_grant(self, services: Services) -> None:
        _, record = make_api_key(services)

        with pytest.raises(ValidationFailed) as exc_info:
            services.key_lifecycle.grant(record.id, "admin", Actor.operator())

        assert "account:security" in exc_info.value.detail
        assert services.keys.get(record.id).grants == frozenset()

    def test_revoke(self, services: Services) -> None:
        account = make_user(services)
        _, record = make_api_key(services, account, name="ci")

        first = services.key_lifecycle.revoke(account.id, record.id, Actor.api_key("key_x", None, None))
        again = services.key_lifecycle.revoke(account.id, record.id, BROWSER)

        assert (first.changed, again.changed) == (True, False)
        assert again.record.revoked_at == first.record.revoked_at
        [event] = _events(services, account.id)
        assert (event.action, event.actor) == ("key.revoked", "api_key:key_x")
        assert event.detail == f"revoked 'ci' ({record.hint}) through the API"

    def test_revoke_as_operator(self, services: Services) -> None:
        _, record = make_api_key(services)

        change = services.key_lifecycle.revoke_as_operator(record.id)

        assert change.record.revoked_reason == RevokedReason.OPERATOR
        [event] = _events(services, record.account_id)
        assert event.detail == f"revoked 'test key' ({record.hint}) with the CLI"

    def test_revoke_leaked(self, services: Services, inbox: Inbox) -> None:
        account = make_user(services)
        raw, record = make_api_key(services, account)
        _, other = make_api_key(services, account)

        revoked = services.key_lifecycle.revoke_leaked([f" {raw} ", "not a key", raw], REPORTER)

        assert [r.id for r in revoked] == [record.id]
        assert services.keys.get(record.id).revoked_reason == RevokedReason.LEAKED
        assert services.keys.get(other.id).revoked_at is None
        [event] = _events(services, account.id)
        assert (event.action, event.actor, event.ip_address) == (
            "key.revoked_leaked",
            "revoke-leaked",
            "192.0.2.9",
        )
        assert _mails(services, inbox, account.email) == 1

    @pytest.mark.parametrize("operation", ["revoke", "rename", "set_expiry", "roll"])
    def test_another_accounts_key_is_not_found(self, services: Services, operation: str) -> None:
        intruder = make_user(services)
        _, theirs = make_api_key(services)
        lifecycle = services.key_lifecycle
        calls: dict[str, Callable[[], object]] = {
            "revoke": lambda: lifecycle.revoke(intruder.id, theirs.id, BROWSER),
            "rename": lambda: lifecycle.rename(intruder.id, theirs.id, "mine", BROWSER),
            "set_expiry": lambda: lifecycle.set_expiry(intruder.id, theirs.id, None, BROWSER),
            "roll": lambda: lifecycle.roll(intruder.id, theirs.id, BROWSER, old_expires_in=timedelta(0)),
        }

        with pytest.raises(NotFound):
            calls[operation]()

        assert services.keys.get(theirs.id) == theirs
        assert _events(services, theirs.account_id) == []

    def test_announce_account_change(self, services: Services) -> None:
        account = make_user(services)
        _, a = make_api_key(services, account)
        _, b = make_api_key(services, account)
        seq = services.keys.latest_change()

        announced = services.key_lifecycle.announce_account_change(account.id)

        assert sorted(announced) == sorted([a.id, b.id])
        assert sorted(services.keys.changes_since(seq)[1]) == sorted([a.id, b.id])


# When the log entry cannot be written, the change is rolled back with it.


@pytest.fixture
def refusing_log(services: Services) -> Iterator[None]:
    """A trigger that makes the database refuse every new security-log row, as a full disk would."""
    postgres = services.engine.dialect.name == "postgresql"
    create = (
        [
            "CREATE FUNCTION refuse_security_log() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'security log refused'; END $$",
            "CREATE TRIGGER refuse_security_log BEFORE INSERT ON security_events "
            "FOR EACH ROW EXECUTE FUNCTION refuse_security_log()",
        ]
        if postgres
        else [
            "CREATE TRIGGER refuse_security_log BEFORE INSERT ON security_events "
            "BEGIN SELECT RAISE(ABORT, 'security log refused'); END"
        ]
    )
    drop = (
        ["DROP TRIGGER refuse_security_log ON security_events", "DROP FUNCTION refuse_security_log()"]
        if postgres
        else ["DROP TRIGGER refuse_security_log"]
    )
    with services.engine.begin() as connection:
        for statement in create:
            connection.execute(text(statement))
    try:
        yield
    finally:
        with services.engine.begin() as connection:
            for statement in drop:
                connection.execute(text(statement))


OPERATIONS: dict[str, Callable[[Services, KeyRecord, str], object]] = {
    "create": lambda s, k, _: s.key_lifecycle.create(k.account_id, "another", BROWSER),
    "roll": lambda s, k, _: s.key_lifecycle.roll(k.account_id, k.id, BROWSER, old_expires_in=timedelta(0)),
    "rename": lambda s, k, _: s.key_lifecycle.rename(k.account_id, k.id, "renamed", BROWSER),
    "set_expiry": lambda s, k, _: s.key_lifecycle.set_expiry(k.account_id, k.id, utcnow(), BROWSER),
    "grant": lambda s, k, _: s.key_lifecycle.grant(k.id, "account:security", Actor.operator()),
    "revoke": lambda s, k, _: s.key_lifecycle.revoke(k.account_id, k.id, BROWSER),
    "revoke_as_operator": lambda s, k, _: s.key_lifecycle.revoke_as_operator(k.id),
    "revoke_leaked": lambda s, _, raw: s.key_lifecycle.revoke_leaked([raw], REPORTER),
}


@pytest.mark.parametrize("operation", OPERATIONS)
def test_a_change_whose_log_entry_fails_is_rolled_back(
    services: Services, inbox: Inbox, request: pytest.FixtureRequest, operation: str
) -> None:
    account = make_user(services)
    raw, record = make_api_key(services, account)
    keys_before, seq = services.keys.list_for_account(account.id), services.keys.latest_change()
    request.getfixturevalue("refusing_log")

    with pytest.raises(SQLAlchemyError):
        OPERATIONS[operation](services, record, raw)

    assert services.keys.list_for_account(account.id) == keys_before
    assert services.keys.latest_change() == seq
    assert _events(services, account.id) == []
    assert _mails(services, inbox, account.email) == 0


@pytest.mark.parametrize("operation", OPERATIONS)
def test_every_operation_changes_and_logs(services: Services, operation: str) -> None:
    """So that the test above, run on the same table, is not passed by doing nothing."""
    account = make_user(services)
    raw, record = make_api_key(services, account)

    OPERATIONS[operation](services, record, raw)

    events = _events(services, account.id)
    assert events
    assert all(e.action.startswith("key.") for e in events)
    assert services.keys.list_for_account(account.id) != [record]
