"""Why a key was revoked: the reasons stored with it, and the phrases people read."""

from __future__ import annotations

import enum

__all__ = ["RevokedReason", "revocation_phrase"]


class RevokedReason(enum.StrEnum):
    """The values of ``api_keys.revoked_reason``; existing rows hold them, so they never change."""

    #: The account's owner, on the dashboard or through the API.
    OWNER = "revoked"
    #: The operator, with ``thotbot keys revoke``.
    OPERATOR = "revoked by operator"
    #: Someone reported the key as leaked (``POST /v1/keys/revoke-leaked``).
    LEAKED = "leaked"


#: For the owner, and for the operator. Keyed by str: the column may hold a value from elsewhere.
_PHRASES: dict[str, tuple[str, str]] = {
    RevokedReason.OWNER: ("revoked by you", "revoked by the owner"),
    RevokedReason.OPERATOR: ("revoked by the operator", "revoked by the operator"),
    RevokedReason.LEAKED: ("revoked as leaked", "revoked as leaked"),
}


def revocation_phrase(reason: str | None, *, to_owner: bool = True) -> str:
    """How a revoked key came to be so, for its owner (the dashboard) or for the operator (the CLI)."""
    phrases = _PHRASES.get(reason or "")
    if phrases is None:
        return "revoked"  # none, or one this version does not know: say no more than is known
    return phrases[0] if to_owner else phrases[1]
