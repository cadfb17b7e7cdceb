"""Pending email changes, on every store backend."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.factories import make_user
from thotbot.core.errors import Conflict
from thotbot.services import Services
from thotbot.storage.email_changes import EmailChangeTokenInvalid, PendingEmailChange

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


class TestEmailChangeStore:
    def test_create_and_find_pending(self, services: Services) -> None:
        account = make_user(services)

        token, pending = services.email_changes.create(account.id, "new@example.com", lifetime=DAY, now=T0)

        assert len(token) >= 43  # 256 random bits
        assert pending == PendingEmailChange(account.id, "new@example.com", T0 + DAY)
        assert services.email_changes.find_pending(account.id, now=T0) == pending
        assert services.email_changes.find_pending(account.id, now=T0 + DAY) is None
        assert services.email_changes.find_pending(make_user(services).id, now=T0) is None

    def test_apply_changes_the_email_and_logs_it(self, services: Services) -> None:
        account = make_user(services, "old@example.com")
        token, _ = services.email_changes.create(account.id, "new@example.com", lifetime=DAY, now=T0)

        applied = services.email_changes.apply(
            token, actor="session:ses_1", ip_address="192.0.2.1", user_agent="Firefox", now=T0
        )

        assert (applied.account_id, applied.old_email, applied.new_email) == (
            account.id,
            "old@example.com",
            "new@example.com",
        )
        assert services.users.get_by_email("new@example.com").id == account.id
        assert services.users.find_by_email("old@example.com") is None
        [event] = services.security_log.list_for_account(account.id)
        assert (event.action, event.actor, event.detail, event.ip_address, event.user_agent) == (
            "email.changed",
            "session:ses_1",
            "email changed from old@example.com to new@example.com",
            "192.0.2.1",
            "Firefox",
        )
        assert event.created_at == T0
        assert services.email_changes.find_pending(account.id, now=T0) is None

    def test_a_token_works_once(self, services: Services) -> None:
        account = make_user(services)
        token, _ = services.email_changes.create(account.id, "new@example.com", lifetime=DAY, now=T0)
        services.email_changes.apply(token, actor="operator", now=T0)

        with pytest.raises(EmailChangeTokenInvalid):
            services.email_changes.apply(token, actor="operator", now=T0)

    @pytest.mark.parametrize("token", ["", "x" * 129, "unknown", "nul\x00byte", "é" * 10])
    def test_an_unknown_token_is_invalid(self, services: Services, token: str) -> None:
        with pytest.raises(EmailChangeTokenInvalid) as exc_info:
            services.email_changes.apply(token, actor="operator")

        assert exc_info.value.status == 422

    def test_an_expired_token_is_invalid_and_spent(self, services: Services) -> None:
        account = make_user(services, "old@example.com")
        token, _ = services.email_changes.create(account.id, "new@example.com", lifetime=DAY, now=T0)

        with pytest.raises(EmailChangeTokenInvalid):
            services.email_changes.apply(token, actor="operator", now=T0 + DAY)
        with pytest.raises(EmailChangeTokenInvalid):
            services.email_changes.apply(token, actor="operator", now=T0)

        assert services.users.get_by_email("old@example.com").id == account.id
        assert services.security_log.list_for_account(account.id) == []

    def test_an_address_taken_meanwhile_is_a_conflict_and_the_token_is_spent(
        self, services: Services
    ) -> None:
        account = make_user(services, "old@example.com")
        token, _ = services.email_changes.create(account.id, "new@example.com", lifetime=DAY, now=T0)
        make_user(services, "new@example.com")

        with pytest.raises(Conflict) as exc_info:
            services.email_changes.apply(token, actor="operator", now=T0)

        assert exc_info.value.extra == {"field": "email"}
        assert services.users.get_by_email("old@example.com").id == account.id
        assert services.security_log.list_for_account(account.id) == []
        with pytest.raises(EmailChangeTokenInvalid):
            services.email_changes.apply(token, actor="operator", now=T0)

    def test_only_the_newest_link_works(self, services: Services) -> None:
        account = make_user(services)
        old, _ = services.email_changes.create(account.id, "first@example.com", lifetime=DAY, now=T0)
        new, pending = services.email_changes.create(account.id, "second@example.com", lifetime=DAY, now=T0)

        assert services.email_changes.find_pending(account.id, now=T0) == pending
        with pytest.raises(EmailChangeTokenInvalid):
            services.email_changes.apply(old, actor="operator", now=T0)
        assert services.email_changes.apply(new, actor="operator", now=T0).new_email == "second@example.com"

    def test_cancel_returns_the_live_addresses_and_kills_the_links(self, services: Services) -> None:
        account, other = make_user(services), make_user(services)
        token, _ = services.email_changes.create(account.id, "new@example.com", lifetime=DAY, now=T0)
        theirs, _ = services.email_changes.create(other.id, "theirs@example.com", lifetime=DAY, now=T0)

        assert services.email_changes.cancel(account.id, now=T0) == ["new@example.com"]
        assert services.email_changes.cancel(account.id, now=T0) == []

        with pytest.raises(EmailChangeTokenInvalid):
            services.email_changes.apply(token, actor="operator", now=T0)
        assert services.email_changes.apply(theirs, actor="operator", now=T0).account_id == other.id

    def test_cancel_drops_an_expired_change_silently(self, services: Services) -> None:
        account = make_user(services)
        services.email_changes.create(account.id, "new@example.com", lifetime=DAY, now=T0)

        assert services.email_changes.cancel(account.id, now=T0 + DAY) == []
        assert services.email_changes.cancel(account.id, now=T0) == []
