"""Storage seams: the Protocols the rest of the code depends on, and the records they return."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

__all__ = ["AccountRecord", "KeyRecord", "KeyStore", "KeyUsage", "UserStore"]


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

    def state(self, now: datetime) -> str:
        if self.revoked_at is not None and self.revoked_at <= now:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"


@dataclass(frozen=True, slots=True)
class KeyUsage:
    last_used_at: datetime
    user_agent: str | None


class KeyStore(Protocol):
    def create(
        self,
        account_id: str,
        name: str,
        *,
        expires_at: datetime | None = None,
        read_only: bool = False,
    ) -> tuple[str, KeyRecord]:
        """Create a key; the raw key is returned here and never again."""

    def find_by_hash(self, digest: bytes) -> KeyRecord | None: ...

    def find(self, key_id: str) -> KeyRecord | None: ...

    def get(self, key_id: str) -> KeyRecord:
        """Return the key or raise NotFound."""

    def list_for_account(self, account_id: str) -> list[KeyRecord]: ...

    def revoke(self, key_id: str, *, reason: str = "revoked") -> KeyRecord: ...

    def revoke_by_hashes(self, digests: Sequence[bytes], *, reason: str) -> list[KeyRecord]: ...

    def grant(self, key_id: str, grant: str) -> KeyRecord: ...

    def record_usage(self, usage: Mapping[str, KeyUsage]) -> None:
        """Write a batch of last-used data; called off the request path."""

    def changes_since(self, seq: int) -> tuple[int, list[str]]:
        """Return the newest change number and the ids of the keys changed after ``seq``."""


class UserStore(Protocol):
    def create(self, email: str, password_hash: str | None, *, is_admin: bool = False) -> AccountRecord: ...

    def find(self, account_id: str) -> AccountRecord | None: ...

    def find_by_email(self, email: str) -> AccountRecord | None: ...

    def get_by_email(self, email: str) -> AccountRecord: ...

    def password_hash(self, account_id: str) -> str | None: ...
