"""What the API answers, as frozen dataclasses: field names as in the JSON, times as aware datetimes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from thotbot.client._errors import UnexpectedResponse

__all__ = ["Account", "Key", "KeyRequest", "Me", "Version"]


@dataclass(frozen=True, slots=True)
class Version:
    """``GET /v1/version``: the server's package version and the API version (``v1``)."""

    version: str
    api: str

    @classmethod
    def from_json(cls, data: object) -> Version:
        body = _object(data, "version")
        return cls(version=_str(body, "version"), api=_str(body, "api"))

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "api": self.api}


@dataclass(frozen=True, slots=True)
class Account:
    """The account a key belongs to."""

    id: str
    email: str

    @classmethod
    def from_json(cls, data: object) -> Account:
        body = _object(data, "account")
        return cls(id=_str(body, "id"), email=_str(body, "email"))

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "email": self.email}


@dataclass(frozen=True, slots=True)
class Key:
    """An API key's metadata; never the key itself. ``state`` is ``active``, ``expired`` or ``revoked``."""

    id: str
    name: str
    hint: str
    created_at: datetime
    expires_at: datetime | None = None
    last_used_at: datetime | None = None
    last_user_agent: str | None = None
    revoked_at: datetime | None = None
    state: str | None = None
    read_only: bool = False
    grants: tuple[str, ...] = ()
    #: The operator's limit for this key (``100/minute``); None: the server's default.
    rate_limit: str | None = None
    #: The key's IP allowlist (CIDRs); empty: any address.
    allowed_networks: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, data: object) -> Key:
        body = _object(data, "key")
        grants = _strings(body, "grants")
        networks = _strings(body, "allowed_networks")
        created_at = _time(body, "created_at")
        if created_at is None:
            raise UnexpectedResponse("key.created_at is missing")
        return cls(
            id=_str(body, "id"),
            name=_str(body, "name"),
            hint=_str(body, "hint"),
            created_at=created_at,
            expires_at=_time(body, "expires_at"),
            last_used_at=_time(body, "last_used_at"),
            last_user_agent=_optional_str(body, "last_user_agent"),
            revoked_at=_time(body, "revoked_at"),
            state=_optional_str(body, "state"),
            read_only=body.get("read_only") is True,
            grants=grants,
            rate_limit=_optional_str(body, "rate_limit"),
            allowed_networks=networks,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "hint": self.hint,
            "created_at": _iso(self.created_at),
            "expires_at": _iso(self.expires_at),
            "last_used_at": _iso(self.last_used_at),
            "last_user_agent": self.last_user_agent,
            "revoked_at": _iso(self.revoked_at),
            "state": self.state,
            "read_only": self.read_only,
            "grants": list(self.grants),
            "rate_limit": self.rate_limit,
            "allowed_networks": list(self.allowed_networks),
        }


@dataclass(frozen=True, slots=True)
class Me:
    """``GET /v1/me``: the calling key and its account."""

    account: Account
    key: Key

    @classmethod
    def from_json(cls, data: object) -> Me:
        body = _object(data, "me")
        return cls(account=Account.from_json(body.get("account")), key=Key.from_json(body.get("key")))

    def to_dict(self) -> dict[str, Any]:
        return {"account": self.account.to_dict(), "key": self.key.to_dict()}


@dataclass(frozen=True, slots=True)
class KeyRequest:
    """One of a key's recent requests (``GET /v1/keys/{key_id}/requests``); ``code`` is the
    problem's code when it failed, else None."""

    at: datetime
    method: str
    path: str
    status: int
    code: str | None
    user_agent: str | None
    duration_ms: float

    @classmethod
    def from_json(cls, data: object) -> KeyRequest:
        body = _object(data, "request")
        at = _time(body, "at")
        status = body.get("status")
        duration = body.get("duration_ms")
        if at is None:
            raise UnexpectedResponse("at is missing")
        if not isinstance(status, int) or isinstance(status, bool):
            raise UnexpectedResponse("status is not a number")
        if not isinstance(duration, int | float) or isinstance(duration, bool):
            raise UnexpectedResponse("duration_ms is not a number")
        return cls(
            at=at,
            method=_str(body, "method"),
            path=_str(body, "path"),
            status=status,
            code=_optional_str(body, "code"),
            user_agent=_optional_str(body, "user_agent"),
            duration_ms=float(duration),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": _iso(self.at),
            "method": self.method,
            "path": self.path,
            "status": self.status,
            "code": self.code,
            "user_agent": self.user_agent,
            "duration_ms": self.duration_ms,
        }


def requests_from_json(data: object) -> list[KeyRequest]:
    requests = _object(data, "requests").get("requests")
    if not isinstance(requests, list):
        raise UnexpectedResponse("requests is not a list")
    return [KeyRequest.from_json(r) for r in requests]


def keys_from_json(data: object) -> list[Key]:
    keys = _object(data, "keys").get("keys")
    if not isinstance(keys, list):
        raise UnexpectedResponse("keys is not a list")
    return [Key.from_json(k) for k in keys]


def _object(data: object, what: str) -> Mapping[str, Any]:
    if not isinstance(data, dict):
        raise UnexpectedResponse(f"{what} is not a JSON object")
    return data


def _str(body: Mapping[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str):
        raise UnexpectedResponse(f"{name} is not a string")
    return value


def _optional_str(body: Mapping[str, Any], name: str) -> str | None:
    value = body.get(name)
    return None if value is None else _str(body, name)


def _strings(body: Mapping[str, Any], name: str) -> tuple[str, ...]:
    """A list of strings; missing or null: none (a server older than the field sends none)."""
    value = body.get(name) or []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise UnexpectedResponse(f"key.{name} is not a list of strings")
    return tuple(value)


def _time(body: Mapping[str, Any], name: str) -> datetime | None:
    """An ISO 8601 time as the API writes it (``2026-12-03T13:00:00.123456Z``), as an aware datetime."""
    value = body.get(name)
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(_str(body, name))
    except ValueError:
        raise UnexpectedResponse(f"{name} is not an ISO 8601 time") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _iso(value: datetime | None) -> str | None:
    """The API's form back: ISO 8601 with a ``Z`` for UTC."""
    return value.isoformat().replace("+00:00", "Z") if value is not None else None
