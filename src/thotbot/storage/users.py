"""SQLUserStore: accounts in SQL, one per normalised email address."""

from __future__ import annotations

import secrets

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from thotbot.accounts import normalize_email
from thotbot.errors import Conflict, NotFound
from thotbot.storage import AccountRecord
from thotbot.storage.db import SessionFactory
from thotbot.storage.models import Account, utcnow

__all__ = ["SQLUserStore", "new_account_id"]


def new_account_id() -> str:
    return "acct_" + secrets.token_hex(8)


def _record(row: Account) -> AccountRecord:
    return AccountRecord(id=row.id, email=row.email, is_admin=row.is_admin, created_at=row.created_at)


class SQLUserStore:
    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    def create(self, email: str, password_hash: str | None, *, is_admin: bool = False) -> AccountRecord:
        email = normalize_email(email)
        row = Account(
            id=new_account_id(),
            email=email,
            password_hash=password_hash,
            is_admin=is_admin,
            created_at=utcnow(),
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

    def count(self) -> int:
        with self._sessions() as session:
            return session.scalar(select(func.count()).select_from(Account)) or 0
