"""JSON shapes of the API's resources."""

from __future__ import annotations

from datetime import datetime

from thotbot.core.dates import iso
from thotbot.storage import AccountRecord, KeyRecord
from thotbot.storage.request_log import RequestEntry

__all__ = ["account_json", "key_json", "request_json"]


def account_json(account: AccountRecord) -> dict[str, object]:
    return {"id": account.id, "email": account.email}


def key_json(key: KeyRecord, now: datetime) -> dict[str, object]:
    return {
        "id": key.id,
        "name": key.name,
        "hint": key.hint,
        "created_at": iso(key.created_at),
        "expires_at": iso(key.expires_at),
        "last_used_at": iso(key.last_used_at),
        "last_user_agent": key.last_user_agent,
        "revoked_at": iso(key.revoked_at),
        "state": key.state(now),
        "read_only": key.read_only,
        "grants": sorted(key.grants),
        # The operator's limit for this key (limits notation); null: the server's default.
        "rate_limit": key.rate_limit,
        # The operator's (or the owner's) IP allowlist for this key, as CIDRs; empty: any address.
        "allowed_networks": list(key.allowed_networks),
    }


def request_json(entry: RequestEntry) -> dict[str, object]:
    return {
        "at": iso(entry.at),
        "method": entry.method,
        "path": entry.path,
        "status": entry.status,
        "code": entry.code,
        "user_agent": entry.user_agent,
        "duration_ms": round(entry.duration_us / 1000, 3),
    }
