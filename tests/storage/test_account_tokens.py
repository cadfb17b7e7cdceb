"""What the SQL account-link and quota stores keep, and their migration; the behaviour every
backend shares is in tests/storage/conformance/ (test_account_tokens.py, test_quotas.py)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select, text

from tests.factories import make_user
from thotbot.services import Services
from thotbot.storage.account_tokens import Purpose
from thotbot.storage.db import make_engine, make_session_factory
from thotbot.storage.migrate import upgrade
from thotbot.storage.models import AccountToken, QuotaCount
from thotbot.storage.quotas import Quota
from thotbot.storage.users import SQLUserStore

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


class TestSQLAccountTokenStore:
    def test_create_stores_only_the_hash(self, services: Services) -> None:
        tokens = services.account_tokens
        account = make_user(services)

        token, link = tokens.create(account.id, Purpose.RESET_PASSWORD, lifetime=HOUR, now=T0)

        assert link.expires_at == T0 + HOUR
        with services.db() as session:
            [row] = session.scalars(select(AccountToken)).all()
        assert row.token_hash == hashlib.sha256(token.encode()).digest()
        assert token.encode() not in row.token_hash
        assert len(token) >= 43  # 256 random bits


class TestSQLQuotaStore:
    QUOTA = Quota("test", 3, HOUR)

    def test_the_table_holds_no_address(self, services: Services) -> None:
        quotas = services.quotas
        quotas.hit(self.QUOTA, "person@example.com", now=T0)

        with services.db() as session:
            [row] = session.scalars(select(QuotaCount)).all()
        assert "example" not in row.bucket
        assert row.bucket.startswith("test:")


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
