"""SQLEmailChangeStore: pending email changes, known by the SHA-256 of their link's token."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from thotbot.core.dates import utcnow
from thotbot.core.errors import Conflict, ValidationFailed
from thotbot.core.redaction import redact_cut
from thotbot.storage.db import SessionFactory
from thotbot.storage.models import Account, EmailChange, SecurityEvent

__all__ = [
    "AppliedEmailChange",
    "EmailChangeTokenInvalid",
    "PendingEmailChange",
    "SQLEmailChangeStore",
    "hash_token",
]

_MAX_TOKEN = 128


def hash_token(token: str) -> bytes:
    """A 256-bit random token needs no slow hash: SHA-256 is one-way enough (as for API keys)."""
    return hashlib.sha256(token.encode("ascii", "replace")).digest()


class EmailChangeTokenInvalid(ValidationFailed):
    """The link is unknown, used already, superseded by a newer one, or expired."""

    default_detail = (
        "This email verification link is invalid, expired or was used already. "
        "Ask for a new one on the dashboard (Security)."
    )


@dataclass(frozen=True, slots=True)
class PendingEmailChange:
    account_id: str
    new_email: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class AppliedEmailChange:
    account_id: str
    old_email: str
    new_email: str


class SQLEmailChangeStore:
    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    def create(
        self, account_id: str, new_email: str, *, lifetime: timedelta, now: datetime | None = None
    ) -> tuple[str, PendingEmailChange]:
        """Start an email change; the token is returned here and never again.

        Only the newest link of an account works: asking again cancels the earlier ones.
        """
        now = now or utcnow()
        token = secrets.token_urlsafe(32)
        row = EmailChange(
            token_hash=hash_token(token),
            account_id=account_id,
            new_email=new_email,
            created_at=now,
            expires_at=now + lifetime,
        )
        with self._sessions.begin() as session:
            session.execute(
                delete(EmailChange).where(
                    (EmailChange.account_id == account_id) | (EmailChange.expires_at <= now)
                )
            )
            session.add(row)
        return token, PendingEmailChange(account_id, new_email, row.expires_at)

    def find_pending(self, account_id: str, *, now: datetime | None = None) -> PendingEmailChange | None:
        """The account's change waiting for its link to be followed, if any (for the dashboard)."""
        now = now or utcnow()
        with self._sessions() as session:
            row = session.scalars(
                select(EmailChange)
                .where(EmailChange.account_id == account_id, EmailChange.expires_at > now)
                .order_by(EmailChange.created_at.desc())
                .limit(1)
            ).one_or_none()
            return PendingEmailChange(row.account_id, row.new_email, row.expires_at) if row else None

    def cancel(self, account_id: str, *, now: datetime | None = None) -> list[str]:
        """Delete the account's pending changes (their links stop working); the live ones' new
        addresses are returned, expired ones go silently."""
        now = now or utcnow()
        with self._sessions.begin() as session:
            rows = session.execute(
                delete(EmailChange)
                .where(EmailChange.account_id == account_id)
                .returning(EmailChange.new_email, EmailChange.expires_at)
            ).all()
        return [row.new_email for row in rows if row.expires_at > now]

    def apply(
        self,
        token: str,
        *,
        actor: str,
        ip_address: str | None = None,
        user_agent: str | None = None,
        now: datetime | None = None,
    ) -> AppliedEmailChange:
        """Spend a token: change the email and write the security event in one transaction.

        Raises EmailChangeTokenInvalid for an unknown, used or expired token, and Conflict when
        another account took the address in the meantime (the token stays spent).
        """
        if not token or len(token) > _MAX_TOKEN:
            raise EmailChangeTokenInvalid
        now = now or utcnow()
        try:
            applied = self._apply(hash_token(token), actor, ip_address, user_agent, now)
        except IntegrityError:
            # Rolled back whole; spend the token on its own so the link cannot be tried again.
            with self._sessions.begin() as session:
                session.execute(delete(EmailChange).where(EmailChange.token_hash == hash_token(token)))
            raise Conflict(
                "Another account uses this email address now; the change was not made.", field="email"
            ) from None
        if applied is None:
            raise EmailChangeTokenInvalid
        return applied

    def _apply(
        self, digest: bytes, actor: str, ip_address: str | None, user_agent: str | None, now: datetime
    ) -> AppliedEmailChange | None:
        with self._sessions.begin() as session:
            # Claimed by deleting it: of two requests following one link, only one gets the row.
            change = session.execute(
                delete(EmailChange)
                .where(EmailChange.token_hash == digest)
                .returning(EmailChange.account_id, EmailChange.new_email, EmailChange.expires_at)
            ).one_or_none()
            if change is None:
                return None
            if change.expires_at <= now:
                return None  # Spent all the same: an expired link is deleted when tried.
            account = session.get(Account, change.account_id, with_for_update=True)
            assert account is not None  # the foreign key cascades: no change outlives its account
            applied = AppliedEmailChange(account.id, account.email, change.new_email)
            account.email = change.new_email
            session.add(
                SecurityEvent(
                    account_id=account.id,
                    action="email.changed",
                    actor=actor,
                    detail=f"email changed from {applied.old_email} to {applied.new_email}",
                    ip_address=ip_address,
                    user_agent=redact_cut(user_agent, 512) if user_agent else None,
                    created_at=now,
                )
            )
            session.flush()
            return applied
