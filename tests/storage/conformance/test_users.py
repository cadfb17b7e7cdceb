from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.factories import make_user
from thotbot.core.accounts import hash_password, verify_password
from thotbot.core.errors import Conflict, NotFound, ValidationFailed
from thotbot.services import Services


class TestUserStore:
    def test_create(self, services: Services) -> None:
        before = datetime.now(UTC)

        account = services.users.create("  Ada@Example.COM ", hash_password("a long password"))

        assert account.id.startswith("acct_")
        assert account.email == "ada@example.com"
        assert account.is_admin is False
        assert account.created_at.tzinfo is not None
        assert before - timedelta(seconds=1) <= account.created_at <= datetime.now(UTC) + timedelta(seconds=1)
        assert services.users.find(account.id) == account

    def test_create_admin_without_password(self, services: Services) -> None:
        account = services.users.create("root@example.com", None, is_admin=True)

        assert account.is_admin is True
        assert services.users.password_hash(account.id) is None

    @pytest.mark.parametrize("second", ["ada@example.com", "ADA@EXAMPLE.COM", " Ada@Example.com\t"])
    def test_create_duplicate_email_is_a_conflict(self, services: Services, second: str) -> None:
        make_user(services, "ada@example.com")

        with pytest.raises(Conflict) as exc_info:
            services.users.create(second, None)

        assert exc_info.value.status == 409
        assert exc_info.value.extra == {"field": "email"}
        assert services.users.count() == 1

    def test_create_refuses_an_invalid_email(self, services: Services) -> None:
        with pytest.raises(ValidationFailed) as exc_info:
            services.users.create("not-an-email", None)

        assert exc_info.value.extra == {"field": "email"}
        assert services.users.count() == 0

    def test_ids_are_unique(self, services: Services) -> None:
        ids = {services.users.create(f"u{n}@example.com", None).id for n in range(20)}

        assert len(ids) == 20

    @pytest.mark.parametrize("query", ["bob@example.com", "BOB@example.com", "  bob@EXAMPLE.com  "])
    def test_find_by_email_ignores_case_and_spaces(self, services: Services, query: str) -> None:
        account = make_user(services, "bob@example.com")

        assert services.users.find_by_email(query) == account
        assert services.users.get_by_email(query) == account

    def test_find_unknown(self, services: Services) -> None:
        assert services.users.find("acct_missing") is None
        assert services.users.find_by_email("nobody@example.com") is None

    def test_find_with_a_nul_is_none_not_an_error(self, services: Services) -> None:
        # PostgreSQL refuses NUL in text; a sign-in form can send one.
        assert services.users.find("acct_\x00") is None
        assert services.users.find_by_email("nobody\x00@example.com") is None

    def test_get_by_email_unknown_raises_not_found(self, services: Services) -> None:
        with pytest.raises(NotFound) as exc_info:
            services.users.get_by_email(" nobody@example.com ")

        assert exc_info.value.status == 404
        assert "nobody@example.com" in exc_info.value.detail

    def test_password_hash(self, services: Services) -> None:
        account = make_user(services, password="another long password")

        stored = services.users.password_hash(account.id)

        assert stored is not None
        assert "another long password" not in stored
        assert verify_password(stored, "another long password")
        assert services.users.password_hash("acct_missing") is None

    def test_count(self, services: Services) -> None:
        assert services.users.count() == 0
        make_user(services)
        make_user(services)

        assert services.users.count() == 2

    def test_delete_unverified_takes_what_the_account_holds_with_it(self, services: Services) -> None:
        stale = services.users.create("stale@example.com", None, verified=False)
        kept = make_user(services)
        for account in (stale, kept):
            services.web_sessions.create(account.id)
            services.security_log.record(account.id, "account.created", actor="operator")
            services.passkeys.add(
                account.id, credential_id=account.id.encode(), public_key=b"k", sign_count=0, name="p"
            )

        assert services.users.delete_unverified(datetime.now(UTC) + timedelta(hours=1)) == 1

        assert services.users.find(stale.id) is None
        assert services.users.find_by_email("stale@example.com") is None
        assert services.web_sessions.list_for_account(stale.id) == []
        assert services.security_log.list_for_account(stale.id) == []
        assert services.passkeys.find_by_credential_id(stale.id.encode()) is None
        assert len(services.web_sessions.list_for_account(kept.id)) == 1
        assert len(services.security_log.list_for_account(kept.id)) == 1
        assert services.passkeys.list_for_account(kept.id) != []

    def test_verify_disable_and_enable(self, services: Services) -> None:
        account = services.users.create("new@example.com", None, verified=False)
        moment = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)

        assert services.users.mark_verified(account.id, now=moment) is True
        assert services.users.mark_verified(account.id) is False
        assert services.users.set_disabled(account.id, True, now=moment) is True
        assert services.users.set_disabled(account.id, True) is False
        found = services.users.find(account.id)
        assert found is not None
        assert (found.email_verified_at, found.disabled_at) == (moment, moment)
        assert services.users.set_disabled(account.id, False) is True
        assert services.users.set_disabled(account.id, False) is False
        assert services.users.get_by_email("new@example.com").disabled is False

    def test_set_password_hash(self, services: Services) -> None:
        account = make_user(services)

        services.users.set_password_hash(account.id, "argon2-hash")

        assert services.users.password_hash(account.id) == "argon2-hash"
        with pytest.raises(NotFound):
            services.users.set_password_hash("acct_missing", "argon2-hash")
