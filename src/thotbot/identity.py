"""Who a request is, how it proved it, and which methods may grant which permission."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

__all__ = [
    "GRANTABLE",
    "PERMISSION_AUTH_METHODS",
    "READ_METHODS",
    "AuthMethod",
    "Identity",
    "Permission",
    "is_restricted",
    "permits",
]

READ_METHODS = frozenset({"GET", "HEAD"})


class AuthMethod(enum.Enum):
    API_KEY = "api_key"
    SESSION = "session"


class Permission(enum.Enum):
    READ = "read"
    WRITE = "write"
    #: Email, password, passkeys and minting keys: whatever could take over the account.
    ACCOUNT_SECURITY = "account:security"


#: Deny by default: a permission not listed here can be had only through a session.
PERMISSION_AUTH_METHODS: dict[Permission, frozenset[AuthMethod]] = {
    Permission.READ: frozenset({AuthMethod.API_KEY, AuthMethod.SESSION}),
    Permission.WRITE: frozenset({AuthMethod.API_KEY, AuthMethod.SESSION}),
}

#: Grants an operator may give one key, lifting the table above for it alone.
GRANTABLE = frozenset({Permission.ACCOUNT_SECURITY.value})


@dataclass(frozen=True, slots=True)
class Identity:
    account_id: str
    method: AuthMethod
    key_id: str | None = None
    read_only: bool = False
    grants: frozenset[str] = field(default_factory=frozenset)


def permits(identity: Identity, permission: Permission) -> bool:
    if permission.value in identity.grants:
        return True
    if identity.method not in PERMISSION_AUTH_METHODS.get(permission, frozenset({AuthMethod.SESSION})):
        return False
    return not (permission is Permission.WRITE and identity.read_only)


def is_restricted(method: str, path: str) -> bool:
    """Whether a /v1 call is to a restricted endpoint (section 5 of the contract): minting keys and
    anything under /v1/account, whatever the method, since a probe there is a takeover attempt too.
    """
    if method == "POST" and path.rstrip("/") == "/v1/keys":
        return True
    return path == "/v1/account" or path.startswith("/v1/account/")
