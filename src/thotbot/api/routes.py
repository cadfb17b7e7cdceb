"""The /v1 endpoints. The guard in web/guard.py has authenticated the request already."""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable
from typing import TypedDict

import anyio.to_thread
from starlette.convertors import StringConvertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from thotbot import __version__
from thotbot.api import account
from thotbot.api.bodies import read_json_object, required_name
from thotbot.api.serializers import account_json, key_json, request_json
from thotbot.auth.refusals import RefusalLog
from thotbot.core.dates import parse_expiry, utcnow
from thotbot.core.errors import (
    EmailNotVerified,
    NotFound,
    RestrictedEndpoint,
    ValidationFailed,
)
from thotbot.core.identity import Actor, Identity, Permission, permits
from thotbot.core.redaction import holds_key, redact
from thotbot.services import Services
from thotbot.storage.request_log import KEEP_PER_KEY

__all__ = ["routes"]

MAX_LEAKED_KEYS = 100


class _KeyID(StringConvertor):
    """A key id in a path: one segment, but not ``revoke-leaked``, a path of its own.

    Without this, ``DELETE /v1/keys/revoke-leaked`` would look for a key of that id and answer 404;
    it is a path that takes POST alone, so it answers 405 with ``Allow: POST``.
    """

    regex = r"(?!revoke-leaked$)[^/]+"


register_url_convertor("key_id", _KeyID())
# Built once, body and headers: /v1/version is the endpoint clients and load tests call most. A
# Response is only read when sent (the guard adds its headers to a copy), so one serves them all.
_VERSION = Response(
    json.dumps({"version": __version__, "api": "v1"}, separators=(",", ":")).encode(),
    media_type="application/json",
)


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def _identity(request: Request) -> Identity:
    identity: Identity = request.state.identity
    return identity


class _ClientMeta(TypedDict):
    ip_address: str | None
    user_agent: str | None


def _client_meta(request: Request) -> _ClientMeta:
    return {
        "ip_address": request.client.host if request.client else None,
        "user_agent": request.headers.get("user-agent"),
    }


async def version(request: Request) -> Response:
    return _VERSION


async def me(request: Request) -> Response:
    services, identity = _services(request), _identity(request)
    assert identity.key_id is not None
    account = await anyio.to_thread.run_sync(services.users.find, identity.account_id)
    key = await anyio.to_thread.run_sync(services.keys.find, identity.key_id)
    if account is None or key is None:
        raise NotFound
    return JSONResponse({"account": account_json(account), "key": key_json(key, utcnow())})


async def list_keys(request: Request) -> Response:
    services, identity = _services(request), _identity(request)
    records = await anyio.to_thread.run_sync(services.keys.list_for_account, identity.account_id)
    now = utcnow()
    return JSONResponse({"keys": [key_json(r, now) for r in records]})


async def revoke_key(request: Request) -> Response:
    services, identity = _services(request), _identity(request)
    key_id = request.path_params["key_id"]
    actor = Actor.api_key(identity.key_id, **_client_meta(request))
    # Revoking a revoked key changes nothing and logs nothing: idempotent, and logged once.
    await anyio.to_thread.run_sync(lambda: services.key_lifecycle.revoke(identity.account_id, key_id, actor))
    return Response(status_code=204)


async def revoke_leaked(request: Request) -> Response:
    services = _services(request)
    body = await read_json_object(request)
    raw_keys = body.get("keys")
    if not isinstance(raw_keys, list) or not all(isinstance(k, str) for k in raw_keys):
        raise ValidationFailed("'keys' must be a list of strings.", field="keys")
    if len(raw_keys) > MAX_LEAKED_KEYS:
        raise ValidationFailed(f"Send at most {MAX_LEAKED_KEYS} keys at a time.", field="keys")
    actor = Actor("revoke-leaked", **_client_meta(request))
    await anyio.to_thread.run_sync(lambda: services.key_lifecycle.revoke_leaked(raw_keys, actor))
    # The same answer whether or not any key existed: the caller learns nothing.
    return JSONResponse({"status": "accepted"}, status_code=202)


def restricted(
    handler: Callable[[Request], Awaitable[Response]],
) -> Callable[[Request], Awaitable[Response]]:
    """Refuse every key without the operator's account:security grant; log every call."""

    @functools.wraps(handler)
    async def guarded(request: Request) -> Response:
        services, identity = _services(request), _identity(request)
        meta = _client_meta(request)
        if not permits(identity, Permission.ACCOUNT_SECURITY):
            refusals = RefusalLog(services.security_log)
            await anyio.to_thread.run_sync(
                lambda: refusals.record(
                    identity.account_id,
                    identity.key_id,
                    request.method,
                    request.url.path,
                    RestrictedEndpoint.code,
                    **meta,
                )
            )
            raise RestrictedEndpoint
        await anyio.to_thread.run_sync(
            lambda: services.security_log.record(
                identity.account_id,
                "restricted.allowed",
                actor=f"api_key:{identity.key_id}",
                key_id=identity.key_id,
                # The path is percent-decoded: a NUL in it would make PostgreSQL refuse the row.
                detail=f"{request.method} {request.url.path}".replace("\x00", "\\x00"),
                **meta,
            )
        )
        return await handler(request)

    return guarded


async def key_requests(request: Request) -> Response:
    """A key's recent requests, newest first: the account's own keys only, revoked ones too."""
    services, identity = _services(request), _identity(request)
    key_id = request.path_params["key_id"]
    limit = _limit(request.query_params.getlist("limit"))
    if limit is None:
        raise ValidationFailed(f"'limit' must be one whole number from 1 to {KEEP_PER_KEY}.", field="limit")
    key = await anyio.to_thread.run_sync(services.keys.find, key_id)
    if key is None or key.account_id != identity.account_id:
        # Another account's key and no key at all answer alike.
        raise NotFound
    entries = await anyio.to_thread.run_sync(lambda: services.request_log.recent(key.id, limit))
    return JSONResponse({"requests": [request_json(e) for e in entries]})


def _limit(values: list[str]) -> int | None:
    """``?limit=``: 1 to KEEP_PER_KEY, KEEP_PER_KEY when absent, None when not that."""
    if not values:
        return KEEP_PER_KEY
    value = values[0]
    if len(values) > 1 or not value.isascii() or not value.isdigit() or len(value) > 4:
        return None
    return int(value) if 1 <= int(value) <= KEEP_PER_KEY else None


@restricted
async def create_key(request: Request) -> Response:
    services, identity = _services(request), _identity(request)
    body = await read_json_object(request)
    name = required_name(body, "name", max_length=100)
    if holds_key(name) or redact(name) != name:
        # It would travel in mail and logs; the detail does not echo it.
        raise ValidationFailed("'name' must not contain an API key.", field="name")
    now = utcnow()
    expires_at = parse_expiry(body.get("expires_at"), now)
    read_only = body.get("read_only", False)
    if not isinstance(read_only, bool):
        raise ValidationFailed("'read_only' must be true or false.", field="read_only")
    account = await anyio.to_thread.run_sync(lambda: services.users.find(identity.account_id))
    if account is None or not account.verified:
        raise EmailNotVerified
    actor = Actor.api_key(identity.key_id, **_client_meta(request))
    raw, record = await anyio.to_thread.run_sync(
        lambda: services.key_lifecycle.create(
            identity.account_id, name, actor, expires_at=expires_at, read_only=read_only
        )
    )
    return JSONResponse({**key_json(record, now), "key": raw}, status_code=201)


routes = [
    Route("/v1/version", version, methods=["GET"]),
    Route("/v1/me", me, methods=["GET"]),
    Route("/v1/keys", list_keys, methods=["GET"]),
    Route("/v1/keys", create_key, methods=["POST"]),
    Route("/v1/keys/revoke-leaked", revoke_leaked, methods=["POST"]),
    Route("/v1/keys/{key_id:key_id}", revoke_key, methods=["DELETE"]),
    Route("/v1/keys/{key_id:key_id}/requests", key_requests, methods=["GET"]),
    Route("/v1/account/email", restricted(account.change_email), methods=["PUT"]),
    Route("/v1/account/password", restricted(account.change_password), methods=["PUT"]),
    Route("/v1/account/passkeys", restricted(account.list_passkeys), methods=["GET"]),
    Route("/v1/account/passkeys", restricted(account.add_passkey), methods=["POST"]),
    Route("/v1/account/passkeys/{passkey_id}", restricted(account.remove_passkey), methods=["DELETE"]),
]
