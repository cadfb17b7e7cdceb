"""SQLKeyStore: API keys in SQL, looked up by the SHA-256 of the key through a unique index."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from thotbot.core import keys
from thotbot.core.dates import utcnow
from thotbot.core.errors import NotFound
from thotbot.core.redaction import redact
from thotbot.storage import KeyRecord, KeyUsage
from thotbot.storage.db import SessionFactory
from thotbot.storage.models import Account, APIKey, KeyEvent

__all__ = ["SQLKeyStore", "new_key_id", "to_record"]


def new_key_id() -> str:
    return "key_" + secrets.token_hex(8)


def to_record(row: APIKey, *, account_disabled: bool = False) -> KeyRecord:
    return KeyRecord(
        id=row.id,
        account_id=row.account_id,
        name=row.name,
        hint=row.hint,
        read_only=row.read_only,
        grants=frozenset(row.grants.split()),
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        last_used_at=row.last_used_at,
        last_user_agent=row.last_user_agent,
        account_disabled=account_disabled,
    )


def _may_be_id(key_id: str) -> bool:
    """Ids come from URLs and the command line: PostgreSQL refuses NUL in text with an error."""
    return len(key_id) <= 32 and "\x00" not in key_id


def _serialize_changes(session: Session) -> None:
    """Make key_events numbers follow commit order; call first in any transaction that adds one.

    Pollers read ``seq > last seen``. On PostgreSQL a sequence hands out numbers at insert time, so
    without this a change numbered 5 could commit after one numbered 6, and a poller that had
    already read 6 would never evict that key: a revocation silently ignored. The lock is held
    until commit and taken before any row lock (no deadlock); plain reads are not blocked. SQLite
    already allows one writer at a time.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("LOCK TABLE key_events IN EXCLUSIVE MODE"))


class SQLKeyStore:
    """``on_change`` hears the ids of keys whose authentication changed, after each commit."""

    def __init__(
        self, sessions: SessionFactory, on_change: Callable[[Sequence[str]], None] | None = None
    ) -> None:
        self._sessions = sessions
        self._on_change = on_change

    def _changed(self, key_ids: Sequence[str]) -> None:
        if key_ids and self._on_change is not None:
            self._on_change(key_ids)

    def create(
        self,
        account_id: str,
        name: str,
        *,
        expires_at: datetime | None = None,
        read_only: bool = False,
    ) -> tuple[str, KeyRecord]:
        raw = keys.generate()
        row = APIKey(
            id=new_key_id(),
            account_id=account_id,
            # The API and the dashboard refuse such a name; this keeps every other caller honest.
            name=redact(name),
            key_hash=keys.hash_key(raw),
            hint=keys.hint(raw),
            read_only=read_only,
            grants="",
            created_at=utcnow(),
            expires_at=expires_at,
        )
        with self._sessions.begin() as session:
            session.add(row)
            session.flush()
            record = to_record(row)
        return raw, record

    def find_by_hash(self, digest: bytes) -> KeyRecord | None:
        """The key and whether its account is disabled, in one query (the guard's cache miss)."""
        with self._sessions() as session:
            found = session.execute(
                select(APIKey, Account.disabled_at)
                .join(Account, Account.id == APIKey.account_id)
                .where(APIKey.key_hash == digest)
            ).one_or_none()
            if found is None:
                return None
            row, disabled_at = found
            return to_record(row, account_disabled=disabled_at is not None)

    def announce_account_change(self, account_id: str) -> list[str]:
        """Write a key change for every key of the account, so every server drops them from its
        cache and reads them again (with the account's new state) within a second."""
        with self._sessions.begin() as session:
            _serialize_changes(session)
            key_ids = list(session.scalars(select(APIKey.id).where(APIKey.account_id == account_id)))
            session.add_all(KeyEvent(key_id=key_id) for key_id in key_ids)
        self._changed(key_ids)
        return key_ids

    def find(self, key_id: str) -> KeyRecord | None:
        if not _may_be_id(key_id):
            return None
        with self._sessions() as session:
            row = session.get(APIKey, key_id)
            return to_record(row) if row else None

    def get(self, key_id: str) -> KeyRecord:
        record = self.find(key_id)
        if record is None:
            raise NotFound(f"No API key with id {key_id!r}.")
        return record

    def list_for_account(self, account_id: str) -> list[KeyRecord]:
        with self._sessions() as session:
            rows = session.scalars(
                select(APIKey).where(APIKey.account_id == account_id).order_by(APIKey.created_at.desc())
            )
            return [to_record(row) for row in rows]

    def revoke(self, key_id: str, *, reason: str = "revoked") -> KeyRecord:
        with self._sessions.begin() as session:
            _serialize_changes(session)
            row = self._locked(session, key_id)
            changed = row.revoked_at is None
            if changed:
                row.revoked_at = utcnow()
                row.revoked_reason = reason
                session.add(KeyEvent(key_id=key_id))
            record = to_record(row)
        self._changed([key_id] if changed else [])
        return record

    def revoke_by_hashes(self, digests: Sequence[bytes], *, reason: str) -> list[KeyRecord]:
        if not digests:
            return []
        now = utcnow()
        with self._sessions.begin() as session:
            _serialize_changes(session)
            rows = session.scalars(
                select(APIKey).where(APIKey.key_hash.in_(digests), APIKey.revoked_at.is_(None))
            ).all()
            for row in rows:
                row.revoked_at = now
                row.revoked_reason = reason
                session.add(KeyEvent(key_id=row.id))
            records = [to_record(row) for row in rows]
        self._changed([r.id for r in records])
        return records

    def grant(self, key_id: str, grant: str) -> KeyRecord:
        with self._sessions.begin() as session:
            _serialize_changes(session)
            row = self._locked(session, key_id)
            current = set(row.grants.split())
            changed = grant not in current
            if changed:
                row.grants = " ".join(sorted(current | {grant}))
                session.add(KeyEvent(key_id=key_id))
            record = to_record(row)
        self._changed([key_id] if changed else [])
        return record

    def set_expiry(self, key_id: str, expires_at: datetime | None) -> KeyRecord:
        with self._sessions.begin() as session:
            _serialize_changes(session)
            row = self._locked(session, key_id)
            row.expires_at = expires_at
            session.add(KeyEvent(key_id=key_id))
            record = to_record(row)
        self._changed([key_id])
        return record

    def rename(self, key_id: str, name: str) -> KeyRecord:
        with self._sessions.begin() as session:
            _serialize_changes(session)
            row = self._locked(session, key_id)
            row.name = redact(name)
            session.add(KeyEvent(key_id=key_id))
            record = to_record(row)
        self._changed([key_id])
        return record

    def record_usage(self, usage: Mapping[str, KeyUsage]) -> None:
        if not usage:
            return
        with self._sessions.begin() as session:
            for key_id, use in sorted(usage.items()):
                session.execute(
                    update(APIKey)
                    .where(APIKey.id == key_id)
                    .where((APIKey.last_used_at.is_(None)) | (APIKey.last_used_at < use.last_used_at))
                    .values(last_used_at=use.last_used_at, last_user_agent=use.user_agent)
                )

    def changes_since(self, seq: int) -> tuple[int, list[str]]:
        with self._sessions() as session:
            rows = session.execute(
                select(KeyEvent.seq, KeyEvent.key_id).where(KeyEvent.seq > seq).order_by(KeyEvent.seq)
            ).all()
        if not rows:
            return seq, []
        return rows[-1][0], [key_id for _, key_id in rows]

    def latest_change(self) -> int:
        with self._sessions() as session:
            return session.scalar(select(func.coalesce(func.max(KeyEvent.seq), 0))) or 0

    @staticmethod
    def _locked(session: Session, key_id: str) -> APIKey:
        row = session.get(APIKey, key_id, with_for_update=True) if _may_be_id(key_id) else None
        if row is None:
            raise NotFound(f"No API key with id {key_id!r}.")
        return row
