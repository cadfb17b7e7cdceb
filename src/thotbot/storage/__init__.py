"""Storage seams: the Protocols the rest of the code depends on, and the records they return."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from thotbot.core.revocation import RevokedReason

__all__ = [
    "AccountRecord",
    "EntryFor",
    "KeyChange",
    "KeyRecord",
    "KeyStore",
    "KeyUsage",
    "LogEntry",
    "UserStore",
]


@dataclass(frozen=True, slots=True)
class AccountRecord:
    id: str
    email: str
    is_admin: bool
    created_at: datetime
    #: None until the address is proven by a mailed link (accounts made by the operator are verified).
    email_verified_at: datetime | None = None
    #: Set by the operator (``thotbot users disable``): no sign-in, no key works.
    disabled_at: datetime | None = None

    @property
    def verified(self) -> bool:
        return self.email_verified_at is not None

    @property
    def disabled(self) -> bool:
        return self.disabled_at is not None


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """A key's metadata; safe to cache, show and log (it holds no secret)."""

    id: str
    account_id: str
    name: str
    hint: str
    read_only: bool
    grants: frozenset[str]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    last_user_agent: str | None
    #: The owning account is disabled: the key is refused (read with the key, so no extra query).
    account_disabled: bool = False
    #: A RevokedReason value once revoked (revocation_phrase says it to people).
    revoked_reason: str | None = None

    def state(self, now: datetime) -> str:
        if self.revoked_at is not None and self.revoked_at <= now:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"


@dataclass(frozen=True, slots=True)
class KeyChange:
    """What a change to a key left: the key, and whether this call changed it (False when, say,
    it was revoked already, by this caller or by another one at the same moment)."""

    record: KeyRecord
    changed: bool


@dataclass(frozen=True, slots=True)
class KeyUsage:
    last_used_at: datetime
    user_agent: str | None


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One security-log event, to be written in the same transaction as the change it reports."""

    account_id: str | None
    action: str
    actor: str
    key_id: str | None = None
    detail: str = ""
    ip_address: str | None = None
    user_agent: str | None = None


#: Makes the security-log entry for a key from the key as the change left it.
EntryFor = Callable[[KeyRecord], LogEntry]


class KeyStore(Protocol):
    """API keys. Each change takes ``log``: the store writes its entry in the change's own
    transaction, and only when something changed, so a change is never logged twice or not at all.
    """

    def create(
        self,
        account_id: str,
        name: str,
        *,
        expires_at: datetime | None = None,
        read_only: bool = False,
        log: EntryFor | None = None,
    ) -> tuple[str, KeyRecord]:
        """Create a key; the raw key is returned here and never again."""

    def roll(
        self,
        key_id: str,
        *,
        expires_at: datetime | None,
        old_expires_at: datetime,
        log: Callable[[KeyRecord, KeyRecord], Sequence[LogEntry]] | None = None,
    ) -> tuple[str, KeyRecord, KeyRecord]:
        """Create the key's replacement and set the old key's expiry, at once: ``log`` gets
        (new, old). Returns the raw new key, the new key and the old one."""

    def find_by_hash(self, digest: bytes) -> KeyRecord | None: ...

    def find(self, key_id: str) -> KeyRecord | None: ...

    def get(self, key_id: str) -> KeyRecord:
        """Return the key or raise NotFound."""

    def list_for_account(self, account_id: str) -> list[KeyRecord]: ...

    def revoke(
        self, key_id: str, *, reason: RevokedReason = RevokedReason.OWNER, log: EntryFor | None = None
    ) -> KeyChange:
        """Revoke the key unless it is revoked already; raise NotFound for an unknown id."""

    def revoke_by_hashes(
        self, digests: Sequence[bytes], *, reason: RevokedReason, log: EntryFor | None = None
    ) -> list[KeyRecord]:
        """Revoke the live keys among these; return those this call revoked."""

    def grant(self, key_id: str, grant: str, *, log: EntryFor | None = None) -> KeyChange: ...

    def rename(self, key_id: str, name: str, *, log: EntryFor | None = None) -> KeyChange: ...

    def set_expiry(
        self, key_id: str, expires_at: datetime | None, *, log: EntryFor | None = None
    ) -> KeyChange: ...

    def announce_account_change(self, account_id: str) -> list[str]:
        """Mark every key of the account changed (servers read them again); return their ids."""

    def changes_since(self, seq: int) -> tuple[int, list[str]]:
        """Return the newest change number and the ids of the keys changed after ``seq``."""

    def latest_change(self) -> int: ...


class UserStore(Protocol):
    def create(self, email: str, password_hash: str | None, *, is_admin: bool = False) -> AccountRecord: ...

    def find(self, account_id: str) -> AccountRecord | None: ...

    def find_by_email(self, email: str) -> AccountRecord | None: ...

    def get_by_email(self, email: str) -> AccountRecord: ...

    def password_hash(self, account_id: str) -> str | None: ...
