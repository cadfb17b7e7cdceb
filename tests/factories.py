"""Factories for accounts and keys, built through the real stores."""

from __future__ import annotations

import functools
import itertools
from datetime import datetime

from thotbot.core.accounts import hash_password
from thotbot.services import Services
from thotbot.storage import AccountRecord, KeyRecord

PASSWORD = "correct horse battery staple"
_counter = itertools.count(1)


def make_user(services: Services, email: str | None = None, *, password: str = PASSWORD) -> AccountRecord:
    email = email or f"user{next(_counter)}@example.com"
    return services.users.create(email, _password_hash(password))


@functools.cache
def _password_hash(password: str) -> str:
    # Argon2 takes a tenth of a second on purpose; one hash (its salt included) serves every account
    # a test makes with the same password, and verifies like any other.
    return hash_password(password)


def security_actions(services: Services, account: AccountRecord) -> list[str]:
    """The account's security log, newest first, as its actions."""
    return [e.action for e in services.security_log.list_for_account(account.id)]


def make_api_key(
    services: Services,
    account: AccountRecord | None = None,
    *,
    name: str = "test key",
    expires_at: datetime | None = None,
    read_only: bool = False,
) -> tuple[str, KeyRecord]:
    account = account or make_user(services)
    return services.keys.create(account.id, name, expires_at=expires_at, read_only=read_only)


def bearer(raw: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {raw}"}


def fake_key(hex_digit: str = "a") -> str:
    """A well-formed key that exists nowhere; assembled at run time so scanners stay quiet."""
    return "thot" + "_ak_" + hex_digit * 96
