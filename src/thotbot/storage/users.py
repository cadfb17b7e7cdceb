"""SQLUserStore: accounts in SQL, one per normalised email address."""

from __future__ import annotations

import secrets
from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError

from thotbot.core.accounts import normalize_email
from thotbot.core.dates import utcnow
from thotbot.core.errors import Conflict, NotFound
from thotbot.storage import AccountRecord
from thotbot.storage.db import SessionFactory
from thotbot.storage.models import Account

__all__ = ["SQLUserStore", "new_account_id"]


def new_account_id() -> str:
    return "acct_" + secrets.token_hex(8)


def _record(row: Account) -> AccountRecord:
    return AccountRecord(
        id=row.id,
        email=row.email,
        is_admin=row.is_admin,
        created_at=row.created_at,
        email_verified_at=row.email_verified_at,
        disabled_at=row.disabled_at,
    )


class SQLUserStore:
    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    def create(
        self, email: str, password_hash: str | None, *, is_admin: bool = False, verified: bool = True
    ) -> AccountRecord:
        """Create an account. The sign-up form passes ``verified=False``: its address is unproven
        until the mailed link is followed. The operator's accounts are verified."""
        email = normalize_email(email)
        now = utcnow()
        row = Account(
            id=new_account_id(),
            email=email,
            password_hash=password_hash,
            is_admin=is_admin,
            created_at=now,
            email_verified_at=now if verified else None,
        )
        try:
            with self._sessions.begin() as session:
                session.add(row)
        except IntegrityError:
            raise Conflict("An account with this email address already exists.", field="email") from None
        return _record(row)

    def find(self, account_id: str) -> AccountRecord | None:
        if "\x00" in account_id:  # PostgreSQL refuses NUL in text with an error
            return None
        with self._sessions() as session:
            row = session.get(Account, account_id)
            return _record(row) if row else None

    def find_by_email(self, email: str) -> AccountRecord | None:
        if "\x00" in email:  # typed into a sign-in form: PostgreSQL refuses NUL in text
            return None
        with self._sessions() as session:
            row = session.scalars(select(Account).where(Account.email == email.strip().lower())).one_or_none()
            return _record(row) if row else None

    def get_by_email(self, email: str) -> AccountRecord:
        record = self.find_by_email(email)
        if record is None:
            raise NotFound(f"No account with email {email.strip()!r}.")
        return record

    def password_hash(self, account_id: str) -> str | None:
        with self._sessions() as session:
            return session.scalar(select(Account.password_hash).where(Account.id == account_id))

    def set_password_hash(self, account_id: str, password_hash: str) -> None:
        with self._sessions.begin() as session:
            row = session.get(Account, account_id)
            if row is None:
                raise NotFound(f"No account with id {account_id!r}.")
            row.password_hash = password_hash

    def mark_verified(self, account_id: str, *, now: datetime | None = None) -> bool:
        """Record that the account's address is proven; False when it already was."""
        with self._sessions.begin() as session:
            result = session.execute(
                update(Account)
                .where(Account.id == account_id, Account.email_verified_at.is_(None))
                .values(email_verified_at=now or utcnow())
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    def set_disabled(self, account_id: str, disabled: bool, *, now: datetime | None = None) -> bool:
        """Disable or enable the account; False when it was so already."""
        state = Account.disabled_at.is_(None) if disabled else Account.disabled_at.is_not(None)
        with self._sessions.begin() as session:
            result = session.execute(
                update(Account)
                .where(Account.id == account_id, state)
                .values(disabled_at=(now or utcnow()) if disabled else None)
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    def delete_unverified(self, created_before: datetime) -> int:
        """Delete the accounts never verified and made before ``created_before`` (with all they hold)."""
        with self._sessions.begin() as session:
            result = session.execute(
                delete(Account).where(
                    Account.email_verified_at.is_(None), Account.created_at < created_before
                )
            )
            return int(result.rowcount)  # type: ignore[attr-defined]

    def count(self) -> int:
        with self._sessions() as session:
            return session.scalar(select(func.count()).select_from(Account)) or 0
