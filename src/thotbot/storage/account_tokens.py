"""SQLAccountTokenStore: single-use account links (sign-up verification, password reset).

Only the SHA-256 of a link's token is stored, as for email changes; the token itself is mailed
once and never kept. Each account has at most one live link per purpose: a new one cancels the old.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import delete, select

from thotbot.core.dates import utcnow
from thotbot.storage.db import SessionFactory
from thotbot.storage.email_changes import hash_token
from thotbot.storage.models import AccountToken

__all__ = ["AccountLink", "Purpose", "SQLAccountTokenStore"]

_MAX_TOKEN = 128


class Purpose(StrEnum):
    VERIFY_EMAIL = "verify_email"
    RESET_PASSWORD = "reset_password"  # noqa: S105 - a purpose's name, not a password


@dataclass(frozen=True, slots=True)
class AccountLink:
    account_id: str
    purpose: Purpose
    expires_at: datetime


class SQLAccountTokenStore:
    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    def create(
        self, account_id: str, purpose: Purpose, *, lifetime: timedelta, now: datetime | None = None
    ) -> tuple[str, AccountLink]:
        """A new link's token, returned here and never again; earlier links for this purpose die."""
        now = now or utcnow()
        token = secrets.token_urlsafe(32)
        row = AccountToken(
            token_hash=hash_token(token),
            account_id=account_id,
            purpose=purpose.value,
            created_at=now,
            expires_at=now + lifetime,
        )
        with self._sessions.begin() as session:
            session.execute(
                delete(AccountToken).where(
                    ((AccountToken.account_id == account_id) & (AccountToken.purpose == purpose.value))
                    | (AccountToken.expires_at <= now)
                )
            )
            session.add(row)
        return token, AccountLink(account_id, purpose, row.expires_at)

    def find(self, token: str, purpose: Purpose, *, now: datetime | None = None) -> AccountLink | None:
        """The live link for this token, without spending it (to show its form)."""
        if not _plausible(token):
            return None
        now = now or utcnow()
        with self._sessions() as session:
            row = session.scalars(
                select(AccountToken).where(
                    AccountToken.token_hash == hash_token(token),
                    AccountToken.purpose == purpose.value,
                    AccountToken.expires_at > now,
                )
            ).one_or_none()
            return AccountLink(row.account_id, purpose, row.expires_at) if row else None

    def take(self, token: str, purpose: Purpose, *, now: datetime | None = None) -> AccountLink | None:
        """Spend the token: of two requests following one link, only one gets it. None when it is
        unknown, used, superseded or expired (an expired one is deleted all the same)."""
        if not _plausible(token):
            return None
        now = now or utcnow()
        with self._sessions.begin() as session:
            row = session.execute(
                delete(AccountToken)
                .where(AccountToken.token_hash == hash_token(token), AccountToken.purpose == purpose.value)
                .returning(AccountToken.account_id, AccountToken.expires_at)
            ).one_or_none()
        if row is None or row.expires_at <= now:
            return None
        return AccountLink(row.account_id, purpose, row.expires_at)

    def find_pending(
        self, account_id: str, purpose: Purpose, *, now: datetime | None = None
    ) -> datetime | None:
        """When the account's live link for this purpose expires, if it has one."""
        now = now or utcnow()
        with self._sessions() as session:
            return session.scalar(
                select(AccountToken.expires_at).where(
                    AccountToken.account_id == account_id,
                    AccountToken.purpose == purpose.value,
                    AccountToken.expires_at > now,
                )
            )

    def cancel(self, account_id: str, purpose: Purpose) -> int:
        with self._sessions.begin() as session:
            result = session.execute(
                delete(AccountToken).where(
                    AccountToken.account_id == account_id, AccountToken.purpose == purpose.value
                )
            )
            return int(result.rowcount)  # type: ignore[attr-defined]


def _plausible(token: str) -> bool:
    return 0 < len(token) <= _MAX_TOKEN and token.isascii()
