"""SQLWebSessionStore: server-side dashboard sessions, known by the SHA-256 of their cookie value."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from thotbot.core.dates import utcnow
from thotbot.core.redaction import redact_cut
from thotbot.storage.db import SessionFactory
from thotbot.storage.models import UsedFormToken, WebSession

__all__ = ["SQLWebSessionStore", "SessionPolicy", "SessionRecord", "hash_token", "new_session_id"]

_MAX_UA = 512


def new_session_id() -> str:
    return "ses_" + secrets.token_hex(8)


def hash_token(token: str) -> bytes:
    """A 256-bit random token needs no slow hash, as for API keys (docs/SECURITY.md)."""
    return hashlib.sha256(token.encode("ascii", "replace")).digest()


@dataclass(frozen=True, slots=True)
class SessionPolicy:
    """How long sessions live. The dashboard no longer makes anonymous ones (``account_id`` None):
    those left by older releases, and any a caller still makes, live by the anonymous terms."""

    idle: timedelta = timedelta(hours=12)
    absolute: timedelta = timedelta(days=14)
    anonymous_idle: timedelta = timedelta(hours=2)
    anonymous_absolute: timedelta = timedelta(days=1)
    #: last_seen_at is written at most this often, so a page view is not always a database write.
    touch_every: timedelta = timedelta(seconds=60)

    def lifetimes(self, account_id: str | None) -> tuple[timedelta, timedelta]:
        """How long a session of this account (None: anonymous) lives idle, and at most."""
        if account_id is None:
            return self.anonymous_idle, self.anonymous_absolute
        return self.idle, self.absolute


@dataclass(frozen=True, slots=True)
class SessionRecord:
    id: str
    account_id: str | None
    csrf_secret: str = field(repr=False)
    created_at: datetime
    last_seen_at: datetime
    authenticated_at: datetime | None
    idle_expires_at: datetime
    expires_at: datetime
    ip_address: str | None
    user_agent: str | None
    #: A one-time notice waiting for the next page (pop_flash reads and clears it).
    flash: str | None = None
    #: The passkey that signed this session in (None: a password); removing it ends the session.
    passkey_id: str | None = None

    @property
    def signed_in(self) -> bool:
        return self.account_id is not None


def _record(row: WebSession) -> SessionRecord:
    return SessionRecord(
        id=row.id,
        account_id=row.account_id,
        csrf_secret=row.csrf_secret,
        created_at=row.created_at,
        last_seen_at=row.last_seen_at,
        authenticated_at=row.authenticated_at,
        idle_expires_at=row.idle_expires_at,
        expires_at=row.expires_at,
        ip_address=row.ip_address,
        user_agent=row.user_agent,
        flash=row.flash,
        passkey_id=row.passkey_id,
    )


class SQLWebSessionStore:
    def __init__(self, sessions: SessionFactory, policy: SessionPolicy | None = None) -> None:
        self._sessions = sessions
        self.policy = policy or SessionPolicy()

    def create(
        self,
        account_id: str | None,
        *,
        ip_address: str | None = None,
        user_agent: str | None = None,
        replaces: str | None = None,
        flash: str | None = None,
        passkey_id: str | None = None,
        now: datetime | None = None,
    ) -> tuple[str, SessionRecord]:
        """Start a session; the cookie value is returned here and never again.

        ``replaces`` names a session to delete in the same transaction: signing in always gets a
        new session id, so a session id planted before sign-in (fixation) is worth nothing after.
        """
        now = now or utcnow()
        idle, absolute = self.policy.lifetimes(account_id)
        token = secrets.token_urlsafe(32)
        row = WebSession(
            id=new_session_id(),
            token_hash=hash_token(token),
            account_id=account_id,
            csrf_secret=secrets.token_hex(32),
            created_at=now,
            last_seen_at=now,
            authenticated_at=now if account_id is not None else None,
            idle_expires_at=now + min(idle, absolute),
            expires_at=now + absolute,
            ip_address=ip_address,
            user_agent=redact_cut(user_agent, _MAX_UA) if user_agent else None,
            flash=flash,
            passkey_id=passkey_id,
        )
        with self._sessions.begin() as session:
            if replaces is not None:
                session.execute(delete(WebSession).where(WebSession.id == replaces))
            session.add(row)
            session.flush()
            record = _record(row)
        return token, record

    def find_by_token(
        self,
        token: str,
        *,
        ip_address: str | None = None,
        user_agent: str | None = None,
        now: datetime | None = None,
    ) -> SessionRecord | None:
        """The live session behind a cookie value, its activity noted; None when unknown or expired."""
        if not token or len(token) > 128:
            return None
        now = now or utcnow()
        with self._sessions.begin() as session:
            row = session.scalars(
                select(WebSession).where(WebSession.token_hash == hash_token(token))
            ).one_or_none()
            if row is None:
                return None
            if row.idle_expires_at <= now or row.expires_at <= now:
                session.delete(row)
                return None
            ua = redact_cut(user_agent, _MAX_UA) if user_agent else None
            if now - row.last_seen_at >= self.policy.touch_every or (row.ip_address, row.user_agent) != (
                ip_address,
                ua,
            ):
                idle, _ = self.policy.lifetimes(row.account_id)
                row.last_seen_at = now
                row.idle_expires_at = min(now + idle, row.expires_at)
                row.ip_address = ip_address
                row.user_agent = ua
            return _record(row)

    def find(self, session_id: str) -> SessionRecord | None:
        with self._sessions() as session:
            row = session.get(WebSession, session_id)
            return _record(row) if row else None

    def list_for_account(self, account_id: str, *, now: datetime | None = None) -> list[SessionRecord]:
        """The account's live sessions, most recently active first."""
        now = now or utcnow()
        with self._sessions() as session:
            rows = session.scalars(
                select(WebSession)
                .where(WebSession.account_id == account_id, WebSession.idle_expires_at > now)
                .order_by(WebSession.last_seen_at.desc(), WebSession.id)
            )
            return [_record(row) for row in rows]

    def reauthenticate(self, session_id: str, *, now: datetime | None = None) -> None:
        """Note a fresh password or passkey proof (the fresh sign-in rule for sensitive changes)."""
        with self._sessions.begin() as session:
            session.execute(
                update(WebSession).where(WebSession.id == session_id).values(authenticated_at=now or utcnow())
            )

    def delete(self, session_id: str, *, account_id: str | None = None) -> bool:
        """End one session; with ``account_id``, only if it belongs to that account."""
        statement = delete(WebSession).where(WebSession.id == session_id)
        if account_id is not None:
            statement = statement.where(WebSession.account_id == account_id)
        with self._sessions.begin() as session:
            return bool(session.execute(statement).rowcount)  # type: ignore[attr-defined]

    def delete_for_account(self, account_id: str, *, keep: str | None = None) -> int:
        """End every session of the account but ``keep``; returns how many ended."""
        statement = delete(WebSession).where(WebSession.account_id == account_id)
        if keep is not None:
            statement = statement.where(WebSession.id != keep)
        with self._sessions.begin() as session:
            return int(session.execute(statement).rowcount)  # type: ignore[attr-defined]

    def delete_for_passkey(self, passkey_id: str, *, keep: str | None = None) -> int:
        """End every session that passkey signed in but ``keep``; returns how many ended.

        ``keep`` is detached from the passkey, so the cascade that follows the passkey's removal
        (web_sessions.passkey_id) does not end it either."""
        statement = delete(WebSession).where(WebSession.passkey_id == passkey_id)
        with self._sessions.begin() as session:
            if keep is not None:
                statement = statement.where(WebSession.id != keep)
                session.execute(
                    update(WebSession)
                    .where(WebSession.id == keep, WebSession.passkey_id == passkey_id)
                    .values(passkey_id=None)
                )
            return int(session.execute(statement).rowcount)  # type: ignore[attr-defined]

    def set_flash(self, session_id: str, message: str) -> None:
        """Keep a one-time notice for the next page. Never a secret: it is stored as it is."""
        with self._sessions.begin() as session:
            session.execute(update(WebSession).where(WebSession.id == session_id).values(flash=message))

    def pop_flash(self, session_id: str) -> str | None:
        with self._sessions.begin() as session:
            row = session.get(WebSession, session_id, with_for_update=True)
            if row is None or row.flash is None:
                return None
            message, row.flash = row.flash, None
            return message

    def spend_form_token(self, session_id: str, token: str, *, now: datetime | None = None) -> bool:
        """True the first time a one-time form token is spent in a session, False ever after."""
        if not token or len(token) > 64:
            return False
        try:
            with self._sessions.begin() as session:
                session.add(UsedFormToken(session_id=session_id, token=token, created_at=now or utcnow()))
        except IntegrityError:
            return False
        return True

    def prune(self, *, now: datetime | None = None) -> int:
        """Delete expired sessions (and, by cascade, their spent form tokens)."""
        with self._sessions.begin() as session:
            return _prune(session, now or utcnow())


def _prune(session: Session, now: datetime) -> int:
    # idle_expires_at is never later than expires_at, so one indexed condition covers both.
    result = session.execute(delete(WebSession).where(WebSession.idle_expires_at <= now))
    return int(result.rowcount)  # type: ignore[attr-defined]
