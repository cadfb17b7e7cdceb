from __future__ import annotations

from datetime import timedelta

import pytest

from tests.factories import make_user
from thotbot.core.dates import utcnow
from thotbot.services import Services
from thotbot.storage import WebSessionStore
from thotbot.storage.web_sessions import SessionPolicy


@pytest.fixture
def store(services: Services) -> WebSessionStore:
    return services.web_sessions


class TestWebSessionStore:
    def test_find_by_token(self, store: WebSessionStore) -> None:
        token, record = store.create(None)

        found = store.find_by_token(token)

        assert found is not None
        assert found.id == record.id
        assert store.find_by_token(token + "x") is None
        assert store.find_by_token("") is None

    def test_idle_timeout(self, store: WebSessionStore, services: Services) -> None:
        account = make_user(services)
        start = utcnow()
        token, _ = store.create(account.id, now=start)

        assert store.find_by_token(token, now=start + store.policy.idle - timedelta(seconds=1)) is not None
        # Activity pushed the idle deadline on; a long silence after it ends the session.
        later = start + store.policy.idle - timedelta(seconds=1)
        assert store.find_by_token(token, now=later + store.policy.idle + timedelta(seconds=1)) is None
        assert store.find_by_token(token, now=start) is None  # and it is gone for good

    def test_absolute_timeout_despite_activity(self, services: Services) -> None:
        policy = SessionPolicy(idle=timedelta(hours=1), absolute=timedelta(hours=3))
        store = services.web_sessions
        store.policy = policy
        account = make_user(services)
        start = utcnow()
        token, _ = store.create(account.id, now=start)

        for minutes in range(30, 180, 30):
            assert store.find_by_token(token, now=start + timedelta(minutes=minutes)) is not None
        assert store.find_by_token(token, now=start + timedelta(hours=3)) is None

    def test_anonymous_sessions_are_short(self, store: WebSessionStore) -> None:
        start = utcnow()
        token, record = store.create(None, now=start)

        assert record.expires_at - start == store.policy.anonymous_absolute
        assert store.find_by_token(token, now=start + store.policy.anonymous_idle) is None

    def test_activity_is_noted_at_most_once_a_minute(self, store: WebSessionStore) -> None:
        start = utcnow()
        token, _ = store.create(None, ip_address="192.0.2.1", user_agent="ua", now=start)

        soon = store.find_by_token(
            token, ip_address="192.0.2.1", user_agent="ua", now=start + timedelta(seconds=5)
        )
        moved = store.find_by_token(
            token, ip_address="192.0.2.9", user_agent="ua", now=start + timedelta(seconds=6)
        )

        assert soon is not None
        assert soon.last_seen_at == start
        assert moved is not None
        assert moved.ip_address == "192.0.2.9"
        assert moved.last_seen_at == start + timedelta(seconds=6)

    def test_create_replacing_a_session(self, store: WebSessionStore, services: Services) -> None:
        old_token, old = store.create(None)

        _, new = store.create(make_user(services).id, replaces=old.id)

        assert new.id != old.id
        assert store.find_by_token(old_token) is None

    def test_list_delete_and_delete_others(self, store: WebSessionStore, services: Services) -> None:
        account, other = make_user(services), make_user(services)
        _, keep = store.create(account.id)
        _, second = store.create(account.id)
        _, third = store.create(account.id)
        _, foreign = store.create(other.id)

        assert {s.id for s in store.list_for_account(account.id)} == {keep.id, second.id, third.id}
        assert store.delete(foreign.id, account_id=account.id) is False
        assert store.delete(second.id, account_id=account.id) is True
        assert store.delete_for_account(account.id, keep=keep.id) == 1
        assert [s.id for s in store.list_for_account(account.id)] == [keep.id]
        assert [s.id for s in store.list_for_account(other.id)] == [foreign.id]

    def test_flash_is_read_once(self, store: WebSessionStore) -> None:
        token, record = store.create(None, flash="hello")

        assert store.pop_flash(record.id) == "hello"
        assert store.pop_flash(record.id) is None
        store.set_flash(record.id, "again")
        found = store.find_by_token(token)
        assert found is not None
        assert found.flash == "again"

    def test_form_tokens_are_spent_once_per_session(self, store: WebSessionStore) -> None:
        _, one = store.create(None)
        _, two = store.create(None)

        assert store.spend_form_token(one.id, "t1") is True
        assert store.spend_form_token(one.id, "t1") is False
        assert store.spend_form_token(two.id, "t1") is True
        assert store.spend_form_token(one.id, "") is False

    def test_reauthenticate(self, store: WebSessionStore, services: Services) -> None:
        start = utcnow() - timedelta(hours=1)
        _, record = store.create(make_user(services).id, now=start)

        store.reauthenticate(record.id)

        found = store.find(record.id)
        assert found is not None
        assert found.authenticated_at is not None
        assert found.authenticated_at > start

    def test_prune_removes_expired_sessions_and_their_tokens(self, store: WebSessionStore) -> None:
        start = utcnow()
        _, stale = store.create(None, now=start - timedelta(days=2))
        _, live = store.create(None, now=start)
        store.spend_form_token(stale.id, "t")

        assert store.prune(now=start) == 1
        assert store.find(stale.id) is None
        assert store.find(live.id) is not None
        assert store.spend_form_token(stale.id, "t") is False  # no session to spend it in any more
