"""SQLPasskeyStore and SQLChallengeStore: WebAuthn credentials and the challenges of pending ceremonies."""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from thotbot.core.dates import utcnow
from thotbot.core.errors import Conflict, NotFound
from thotbot.storage.db import SessionFactory
from thotbot.storage.models import Passkey, WebAuthnChallenge

_URLSAFE = re.compile(r"[A-Za-z0-9_-]+")

__all__ = [
    "ChallengeRecord",
    "PasskeyRecord",
    "SQLChallengeStore",
    "SQLPasskeyStore",
    "new_passkey_id",
]


def new_passkey_id() -> str:
    return "psk_" + secrets.token_hex(8)


def _is_passkey_id(value: str) -> bool:
    # Checked before any query: PostgreSQL refuses some strings (NUL) with an error, not a miss.
    return len(value) == 20 and value.startswith("psk_") and all(c in "0123456789abcdef" for c in value[4:])


@dataclass(frozen=True, slots=True)
class PasskeyRecord:
    """A passkey's data; the public key is no secret, but it is left out of the repr as noise."""

    id: str
    account_id: str
    credential_id: bytes = field(repr=False)
    public_key: bytes = field(repr=False)
    sign_count: int
    transports: tuple[str, ...]
    name: str
    created_at: datetime
    last_used_at: datetime | None


def _record(row: Passkey) -> PasskeyRecord:
    return PasskeyRecord(
        id=row.id,
        account_id=row.account_id,
        credential_id=row.credential_id,
        public_key=row.public_key,
        sign_count=row.sign_count,
        transports=tuple(row.transports.split()),
        name=row.name,
        created_at=row.created_at,
        last_used_at=row.last_used_at,
    )


class SQLPasskeyStore:
    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    def add(
        self,
        account_id: str,
        *,
        credential_id: bytes,
        public_key: bytes,
        sign_count: int,
        name: str,
        transports: Sequence[str] = (),
        now: datetime | None = None,
    ) -> PasskeyRecord:
        """Store a verified credential; Conflict when this credential is registered already."""
        row = Passkey(
            id=new_passkey_id(),
            account_id=account_id,
            credential_id=credential_id,
            public_key=public_key,
            sign_count=sign_count,
            transports=" ".join(transports),
            name=name,
            created_at=now or utcnow(),
            last_used_at=None,
        )
        try:
            with self._sessions.begin() as session:
                session.add(row)
        except IntegrityError:
            raise Conflict("This passkey is registered already.", field="credential") from None
        return _record(row)

    def list_for_account(self, account_id: str) -> list[PasskeyRecord]:
        with self._sessions() as session:
            rows = session.scalars(
                select(Passkey)
                .where(Passkey.account_id == account_id)
                .order_by(Passkey.created_at, Passkey.id)
            )
            return [_record(row) for row in rows]

    def find(self, passkey_id: str, *, account_id: str) -> PasskeyRecord | None:
        """The account's passkey with this id; None when it has none such (whoever else might)."""
        if not _is_passkey_id(passkey_id):
            return None
        with self._sessions() as session:
            row = session.get(Passkey, passkey_id)
            return _record(row) if row is not None and row.account_id == account_id else None

    def find_by_credential_id(self, credential_id: bytes) -> PasskeyRecord | None:
        with self._sessions() as session:
            row = session.scalars(select(Passkey).where(Passkey.credential_id == credential_id)).one_or_none()
            return _record(row) if row else None

    def rename(self, passkey_id: str, name: str, *, account_id: str) -> PasskeyRecord:
        with self._sessions.begin() as session:
            row = session.get(Passkey, passkey_id) if _is_passkey_id(passkey_id) else None
            if row is None or row.account_id != account_id:
                raise NotFound(f"You have no passkey with id {passkey_id!r}.")
            row.name = name
            return _record(row)

    def remove(self, passkey_id: str, *, account_id: str) -> PasskeyRecord:
        with self._sessions.begin() as session:
            row = session.get(Passkey, passkey_id) if _is_passkey_id(passkey_id) else None
            if row is None or row.account_id != account_id:
                raise NotFound(f"You have no passkey with id {passkey_id!r}.")
            record = _record(row)
            session.delete(row)
            return record

    def record_use(self, passkey_id: str, sign_count: int, *, now: datetime | None = None) -> bool:
        """Note a verified sign-in; False when the counter did not move past the stored one.

        The check is in the UPDATE itself, so two requests replaying one assertion at the same
        moment cannot both pass: only one of them finds the old counter still in place.
        """
        moves_on = Passkey.sign_count < sign_count
        if sign_count == 0:
            # Authenticators without a counter always send 0; that is allowed only while both are 0.
            moves_on = Passkey.sign_count == 0
        with self._sessions.begin() as session:
            result = session.execute(
                update(Passkey)
                .where(Passkey.id == passkey_id, moves_on)
                .values(sign_count=sign_count, last_used_at=now or utcnow())
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class ChallengeRecord:
    id: str
    purpose: str
    account_id: str | None
    challenge: bytes = field(repr=False)
    created_at: datetime
    expires_at: datetime


class SQLChallengeStore:
    """Challenges live in the database, so any server instance can finish a ceremony another began."""

    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    def create(
        self,
        purpose: str,
        challenge: bytes,
        *,
        account_id: str | None,
        lifetime: timedelta,
        now: datetime | None = None,
    ) -> ChallengeRecord:
        now = now or utcnow()
        row = WebAuthnChallenge(
            id=secrets.token_urlsafe(24),
            purpose=purpose,
            account_id=account_id,
            challenge=challenge,
            created_at=now,
            expires_at=now + lifetime,
        )
        with self._sessions.begin() as session:
            # Expired challenges are never used again: sweep them as new ones come (indexed).
            session.execute(delete(WebAuthnChallenge).where(WebAuthnChallenge.expires_at <= now))
            session.add(row)
        return ChallengeRecord(
            id=row.id,
            purpose=purpose,
            account_id=account_id,
            challenge=challenge,
            created_at=row.created_at,
            expires_at=row.expires_at,
        )

    def take(self, challenge_id: str) -> ChallengeRecord | None:
        """Delete a challenge and return it: whoever takes it first is the only one to get it.

        Expiry, purpose and account are for the caller to check; the challenge is gone either way.
        """
        # Made by token_urlsafe: anything else is no challenge of ours (and NUL upsets PostgreSQL).
        if len(challenge_id) > 64 or not _URLSAFE.fullmatch(challenge_id):
            return None
        with self._sessions.begin() as session:
            row = session.execute(
                delete(WebAuthnChallenge)
                .where(WebAuthnChallenge.id == challenge_id)
                .returning(
                    WebAuthnChallenge.purpose,
                    WebAuthnChallenge.account_id,
                    WebAuthnChallenge.challenge,
                    WebAuthnChallenge.created_at,
                    WebAuthnChallenge.expires_at,
                )
            ).one_or_none()
        if row is None:
            return None
        return ChallengeRecord(
            id=challenge_id,
            purpose=row.purpose,
            account_id=row.account_id,
            challenge=row.challenge,
            created_at=row.created_at,
            expires_at=row.expires_at,
        )
