"""Single-use account links and action quotas, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, text

from tests.factories import make_user
from thotbot.services import Services
from thotbot.storage.account_tokens import Purpose, SQLAccountTokenStore
from thotbot.storage.db import make_engine, make_session_factory
from thotbot.storage.migrate import upgrade
from thotbot.storage.models import AccountToken, QuotaCount
from thotbot.storage.quotas import Quota, SQLQuotaStore
from thotbot.storage.users import SQLUserStore

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


@pytest.fixture
def tokens(services: Services) -> SQLAccountTokenStore:
    return SQLAccountTokenStore(services.db)


@pytest.fixture
def quotas(services: Services) -> SQLQuotaStore:
    return SQLQuotaStore(services.db)


class TestSQLAccountTokenStore:
    def test_create_stores_only_the_hash(self, services: Services, tokens: SQLAccountTokenStore) -> None:
        account = make_user(services)

        token, link = tokens.create(account.id, Purpose.RESET_PASSWORD, lifetime=HOUR, now=T0)

        assert link.expires_at == T0 + HOUR
        with services.db() as session:
            [row] = session.scalars(select(AccountToken)).all()
        assert row.token_hash == hashlib.sha256(token.encode()).digest()
        assert token.encode() not in row.token_hash
        assert len(token) >= 43  # 256 random bits

    def test_take_works_once(self, services: Services, tokens: SQLAccountTokenStore) -> None:
        account = make_user(services)
        token, _ = tokens.create(account.id, Purpose.VERIFY_EMAIL, lifetime=HOUR, now=T0)

        assert tokens.find(token, Purpose.VERIFY_EMAIL, now=T0) is not None  # find does not spend it
        taken = tokens.take(token, Purpose.VERIFY_EMAIL, now=T0)

        assert taken is not None
        assert taken.account_id == account.id
        assert tokens.take(token, Purpose.VERIFY_EMAIL, now=T0) is None
        assert tokens.find(token, Purpose.VERIFY_EMAIL, now=T0) is None

    def test_take_refuses_an_expired_token_and_spends_it(
        self, services: Services, tokens: SQLAccountTokenStore
    ) -> None:
        account = make_user(services)
        token, _ = tokens.create(account.id, Purpose.RESET_PASSWORD, lifetime=HOUR, now=T0)

        assert tokens.find(token, Purpose.RESET_PASSWORD, now=T0 + HOUR) is None
        assert tokens.take(token, Purpose.RESET_PASSWORD, now=T0 + HOUR) is None
        assert tokens.take(token, Purpose.RESET_PASSWORD, now=T0) is None

    def test_a_token_is_for_one_purpose(self, services: Services, tokens: SQLAccountTokenStore) -> None:
        account = make_user(services)
        token, _ = tokens.create(account.id, Purpose.VERIFY_EMAIL, lifetime=HOUR, now=T0)

        assert tokens.take(token, Purpose.RESET_PASSWORD, now=T0) is None
        assert tokens.take(token, Purpose.VERIFY_EMAIL, now=T0) is not None

    def test_a_new_link_supersedes_the_old_one_of_its_purpose(
        self, services: Services, tokens: SQLAccountTokenStore
    ) -> None:
        account = make_user(services)
        old, _ = tokens.create(account.id, Purpose.RESET_PASSWORD, lifetime=HOUR, now=T0)
        verify, _ = tokens.create(account.id, Purpose.VERIFY_EMAIL, lifetime=HOUR, now=T0)
        new, _ = tokens.create(account.id, Purpose.RESET_PASSWORD, lifetime=HOUR, now=T0)

        assert tokens.take(old, Purpose.RESET_PASSWORD, now=T0) is None
        assert tokens.take(new, Purpose.RESET_PASSWORD, now=T0) is not None
        assert tokens.find(verify, Purpose.VERIFY_EMAIL, now=T0) is not None

    def test_find_pending_and_cancel(self, services: Services, tokens: SQLAccountTokenStore) -> None:
        account = make_user(services)
        token, link = tokens.create(account.id, Purpose.VERIFY_EMAIL, lifetime=HOUR)

        assert tokens.find_pending(account.id, Purpose.VERIFY_EMAIL) == link.expires_at
        assert tokens.cancel(account.id, Purpose.VERIFY_EMAIL) == 1
        assert tokens.find_pending(account.id, Purpose.VERIFY_EMAIL) is None
        assert tokens.take(token, Purpose.VERIFY_EMAIL) is None

    @pytest.mark.parametrize("token", ["", "x" * 129, "nul\x00byte", "é" * 10])
    def test_hostile_tokens_are_refused_quietly(self, tokens: SQLAccountTokenStore, token: str) -> None:
        assert tokens.find(token, Purpose.RESET_PASSWORD) is None
        assert tokens.take(token, Purpose.RESET_PASSWORD) is None

    def test_an_unverified_account_and_its_links_are_deleted_once_expired(
        self, services: Services, tokens: SQLAccountTokenStore
    ) -> None:
        stale = services.users.create("stale@example.com", None, verified=False)
        kept = make_user(services)
        token, _ = tokens.create(stale.id, Purpose.VERIFY_EMAIL, lifetime=HOUR)

        assert services.users.delete_unverified(datetime.now(UTC) + HOUR) == 1

        assert services.users.find(stale.id) is None
        assert services.users.find(kept.id) is not None
        assert tokens.take(token, Purpose.VERIFY_EMAIL) is None


class TestSQLQuotaStore:
    QUOTA = Quota("test", 3, HOUR)

    def test_hit_counts_up_to_the_limit(self, quotas: SQLQuotaStore) -> None:
        assert [quotas.hit(self.QUOTA, "198.51.100.7", now=T0) for _ in range(3)] == [0, 0, 0]

        assert quotas.hit(self.QUOTA, "198.51.100.7", now=T0 + timedelta(minutes=15)) == 45 * 60
        assert quotas.hit(self.QUOTA, "198.51.100.8", now=T0) == 0  # another bucket

    def test_a_new_window_starts_afresh(self, quotas: SQLQuotaStore) -> None:
        for _ in range(4):
            quotas.hit(self.QUOTA, "a", now=T0)

        assert quotas.hit(self.QUOTA, "a", now=T0 + HOUR) == 0

    def test_the_table_holds_no_address(self, services: Services, quotas: SQLQuotaStore) -> None:
        quotas.hit(self.QUOTA, "person@example.com", now=T0)

        with services.db() as session:
            [row] = session.scalars(select(QuotaCount)).all()
        assert "example" not in row.bucket
        assert row.bucket.startswith("test:")

    def test_prune_forgets_old_windows(self, quotas: SQLQuotaStore) -> None:
        quotas.hit(self.QUOTA, "old", now=T0)
        quotas.hit(self.QUOTA, "new", now=T0 + HOUR)

        assert quotas.prune(HOUR, now=T0 + HOUR + timedelta(seconds=1)) == 1


# The migration


def test_existing_accounts_are_verified_by_the_migration(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    upgrade(engine, "0004_account_security")
    with engine.begin() as connection:
        connection.execute(
            text("INSERT INTO accounts (id, email, is_admin, created_at) VALUES (:id, :email, 0, :at)"),
            {"id": "acct_0123456789abcdef", "email": "old@example.com", "at": T0.replace(tzinfo=None)},
        )

    upgrade(engine)

    account = SQLUserStore(make_session_factory(engine)).find("acct_0123456789abcdef")
    engine.dispose()
    assert account is not None
    assert account.email_verified_at == T0
    assert not account.disabled
