"""Who a request is, how it proved it, which methods may grant which permission, and who acted."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TypedDict

__all__ = [
    "GRANTABLE",
    "PERMISSION_AUTH_METHODS",
    "READ_METHODS",
    "Actor",
    "ActorFields",
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
    #: Email, password, passkeys and minting keys: whatever could take over the account.
    ACCOUNT_SECURITY = "account:security"


#: Deny by default: a permission not listed here can be had only through a session. (What a
#: read-only key may do is decided by the request method, READ_METHODS, where keys are verified.)
PERMISSION_AUTH_METHODS: dict[Permission, frozenset[AuthMethod]] = {}

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
    return identity.method in PERMISSION_AUTH_METHODS.get(permission, frozenset({AuthMethod.SESSION}))


def is_restricted(method: str, path: str) -> bool:
    """Whether a /v1 call is to a restricted endpoint (section 5 of the contract): minting keys and
    anything under /v1/account, whatever the method, since a probe there is a takeover attempt too.
    """
    if method == "POST" and path.rstrip("/") == "/v1/keys":
        return True
    return path == "/v1/account" or path.startswith("/v1/account/")


class ActorFields(TypedDict):
    actor: str
    ip_address: str | None
    user_agent: str | None


@dataclass(frozen=True, slots=True)
class Actor:
    """Who made a change and from where: written to the security log and named in the mail."""

    #: As the security log's ``actor`` column has it: ``session:ses_…``, ``api_key:key_…``, ``operator``.
    who: str
    ip_address: str | None = None
    user_agent: str | None = None
    #: The dashboard session making the change, kept alive when a password change ends the others.
    session_id: str | None = None

    @classmethod
    def session(cls, session_id: str, ip_address: str | None, user_agent: str | None) -> Actor:
        return cls(f"session:{session_id}", ip_address, user_agent, session_id)

    @classmethod
    def visitor(cls, ip_address: str | None, user_agent: str | None) -> Actor:
        """Someone on the dashboard who is not signed in (following an emailed link, say)."""
        return cls("anonymous", ip_address, user_agent)

    @classmethod
    def api_key(cls, key_id: str | None, ip_address: str | None, user_agent: str | None) -> Actor:
        return cls(f"api_key:{key_id}", ip_address, user_agent)

    @classmethod
    def anonymous(cls, ip_address: str | None, user_agent: str | None) -> Actor:
        return cls("anonymous", ip_address, user_agent)

    @classmethod
    def operator(cls) -> Actor:
        return cls("operator")

    def log_fields(self) -> ActorFields:
        """The keyword arguments SecurityLog.record takes about the actor."""
        return {"actor": self.who, "ip_address": self.ip_address, "user_agent": self.user_agent}

    def describe(self) -> str:
        kind, _, ident = self.who.partition(":")
        if kind in ("session", "anonymous"):
            return "on the dashboard"
        if kind == "api_key":
            return f"through the API, with the key {ident}"
        if kind == "operator":
            return "by the operator, with the thotbot command"
        if kind == "anonymous":
            return "on the dashboard, by someone not signed in"
        if kind == "revoke-leaked":
            return "by a leaked-key report"
        if kind == "secret-scanning":
            return "by GitHub secret scanning, which found it in public"
        return f"by {self.who}"
