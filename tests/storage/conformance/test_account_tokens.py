"""Single-use account links, on every store backend."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.factories import make_user
from thotbot.services import Services
from thotbot.storage import AccountTokenStore
from thotbot.storage.account_tokens import Purpose

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


@pytest.fixture
def tokens(services: Services) -> AccountTokenStore:
    return services.account_tokens


class TestAccountTokenStore:
    def test_take_works_once(self, services: Services, tokens: AccountTokenStore) -> None:
        account = make_user(services)
        token, _ = tokens.create(account.id, Purpose.VERIFY_EMAIL, lifetime=HOUR, now=T0)

        assert tokens.find(token, Purpose.VERIFY_EMAIL, now=T0) is not None  # find does not spend it
        taken = tokens.take(token, Purpose.VERIFY_EMAIL, now=T0)

        assert taken is not None
        assert taken.account_id == account.id
        assert tokens.take(token, Purpose.VERIFY_EMAIL, now=T0) is None
        assert tokens.find(token, Purpose.VERIFY_EMAIL, now=T0) is None

    def test_take_refuses_an_expired_token_and_spends_it(
        self, services: Services, tokens: AccountTokenStore
    ) -> None:
        account = make_user(services)
        token, _ = tokens.create(account.id, Purpose.RESET_PASSWORD, lifetime=HOUR, now=T0)

        assert tokens.find(token, Purpose.RESET_PASSWORD, now=T0 + HOUR) is None
        assert tokens.take(token, Purpose.RESET_PASSWORD, now=T0 + HOUR) is None
        assert tokens.take(token, Purpose.RESET_PASSWORD, now=T0) is None

    def test_a_token_is_for_one_purpose(self, services: Services, tokens: AccountTokenStore) -> None:
        account = make_user(services)
        token, _ = tokens.create(account.id, Purpose.VERIFY_EMAIL, lifetime=HOUR, now=T0)

        assert tokens.take(token, Purpose.RESET_PASSWORD, now=T0) is None
        assert tokens.take(token, Purpose.VERIFY_EMAIL, now=T0) is not None

    def test_a_new_link_supersedes_the_old_one_of_its_purpose(
        self, services: Services, tokens: AccountTokenStore
    ) -> None:
        account = make_user(services)
        old, _ = tokens.create(account.id, Purpose.RESET_PASSWORD, lifetime=HOUR, now=T0)
        verify, _ = tokens.create(account.id, Purpose.VERIFY_EMAIL, lifetime=HOUR, now=T0)
        new, _ = tokens.create(account.id, Purpose.RESET_PASSWORD, lifetime=HOUR, now=T0)

        assert tokens.take(old, Purpose.RESET_PASSWORD, now=T0) is None
        assert tokens.take(new, Purpose.RESET_PASSWORD, now=T0) is not None
        assert tokens.find(verify, Purpose.VERIFY_EMAIL, now=T0) is not None

    def test_find_pending_and_cancel(self, services: Services, tokens: AccountTokenStore) -> None:
        account = make_user(services)
        token, link = tokens.create(account.id, Purpose.VERIFY_EMAIL, lifetime=HOUR)

        assert tokens.find_pending(account.id, Purpose.VERIFY_EMAIL) == link.expires_at
        assert tokens.cancel(account.id, Purpose.VERIFY_EMAIL) == 1
        assert tokens.find_pending(account.id, Purpose.VERIFY_EMAIL) is None
        assert tokens.take(token, Purpose.VERIFY_EMAIL) is None

    @pytest.mark.parametrize("token", ["", "x" * 129, "nul\x00byte", "é" * 10])
    def test_hostile_tokens_are_refused_quietly(self, tokens: AccountTokenStore, token: str) -> None:
        assert tokens.find(token, Purpose.RESET_PASSWORD) is None
        assert tokens.take(token, Purpose.RESET_PASSWORD) is None

    def test_an_unverified_account_and_its_links_are_deleted_once_expired(
        self, services: Services, tokens: AccountTokenStore
    ) -> None:
        stale = services.users.create("stale@example.com", None, verified=False)
        kept = make_user(services)
        token, _ = tokens.create(stale.id, Purpose.VERIFY_EMAIL, lifetime=HOUR)

        assert services.users.delete_unverified(datetime.now(UTC) + HOUR) == 1

        assert services.users.find(stale.id) is None
        assert services.users.find(kept.id) is not None
        assert tokens.take(token, Purpose.VERIFY_EMAIL) is None
