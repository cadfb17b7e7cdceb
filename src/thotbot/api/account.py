"""The restricted /v1/account endpoints: email, password and passkeys.

routes.py wraps each handler in ``restricted``, so only a key granted ``account:security`` gets
here (and each call is logged). The rules are the dashboard's, from thotbot.account_security.
"""

from __future__ import annotations

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from thotbot.account_security import MAX_PASSKEY_NAME, AccountSecurity
from thotbot.api.bodies import read_json_object, required_str
from thotbot.core.dates import iso
from thotbot.core.errors import ValidationFailed
from thotbot.core.identity import Actor, Identity
from thotbot.services import Services
from thotbot.storage.passkeys import PasskeyRecord

__all__ = [
    "add_passkey",
    "change_email",
    "change_password",
    "list_passkeys",
    "passkey_json",
    "remove_passkey",
]

MAX_PASSWORD_FIELD = 4096


def passkey_json(passkey: PasskeyRecord) -> dict[str, object]:
    return {
        "id": passkey.id,
        "name": passkey.name,
        "created_at": iso(passkey.created_at),
        "last_used_at": iso(passkey.last_used_at),
        "transports": list(passkey.transports),
    }


def _context(request: Request) -> tuple[AccountSecurity, str, Actor]:
    services: Services = request.app.state.services
    identity: Identity = request.state.identity
    client = request.client.host if request.client else None
    actor = Actor.api_key(identity.key_id, client, request.headers.get("user-agent"))
    return services.account_security, identity.account_id, actor


async def change_email(request: Request) -> Response:
    """202: a link went to the new address (or, if it has an account, a notice); nothing changed yet."""
    security, account_id, actor = _context(request)
    email = required_str(await read_json_object(request), "email", max_length=320)
    await anyio.to_thread.run_sync(lambda: security.request_email_change(account_id, email, actor))
    return JSONResponse(
        {
            "status": "verification_sent",
            "detail": "A verification link was sent to the new address. The email address changes "
            "only when that link is followed, within 24 hours.",
        },
        status_code=202,
    )


async def change_password(request: Request) -> Response:
    """204; every dashboard session of the account ends (an API call has none of its own)."""
    security, account_id, actor = _context(request)
    body = await read_json_object(request)
    current, new = _password(body, "current_password"), _password(body, "new_password")
    await anyio.to_thread.run_sync(lambda: security.change_password(account_id, current, new, actor))
    return Response(status_code=204)


async def list_passkeys(request: Request) -> Response:
    security, account_id, _ = _context(request)
    passkeys = await anyio.to_thread.run_sync(security.list_passkeys, account_id)
    return JSONResponse({"passkeys": [passkey_json(p) for p in passkeys]})


async def add_passkey(request: Request) -> Response:
    """Both steps of the ceremony: no ``credential`` gives the options (200), one adds the passkey (201)."""
    security, account_id, actor = _context(request)
    body = await read_json_object(request) if await request.body() else {}
    _check_passkey_body(body)
    if "credential" not in body:
        ceremony = await anyio.to_thread.run_sync(security.begin_passkey_registration, account_id)
        return JSONResponse(
            {
                "challenge_id": ceremony.challenge_id,
                "expires_at": iso(ceremony.expires_at),
                "options": ceremony.options,
            }
        )
    passkey = await anyio.to_thread.run_sync(
        lambda: security.add_passkey(
            account_id, body.get("challenge_id"), body["credential"], body.get("name"), actor
        )
    )
    return JSONResponse(passkey_json(passkey), status_code=201)


async def remove_passkey(request: Request) -> Response:
    security, account_id, actor = _context(request)
    passkey_id = request.path_params["passkey_id"]
    await anyio.to_thread.run_sync(lambda: security.remove_passkey(account_id, passkey_id, actor))
    return Response(status_code=204)


def _check_passkey_body(body: dict[str, object]) -> None:
    """The body's members have the types the description gives, in both steps.

    Step one reads none of them, but a body the description refuses is refused in either step:
    a client sending ``name`` as an object learns it at once, not after the ceremony.
    """
    name = body.get("name")
    if name is not None and (not isinstance(name, str) or len(name) > MAX_PASSKEY_NAME):
        raise ValidationFailed(
            f"'name' must be a string of at most {MAX_PASSKEY_NAME} characters.", field="name"
        )
    if "challenge_id" in body and not isinstance(body["challenge_id"], str):
        raise ValidationFailed("'challenge_id' must be the string step one answered.", field="challenge_id")
    if "credential" in body and not isinstance(body["credential"], dict):
        raise ValidationFailed(
            "'credential' must be the object PublicKeyCredential.toJSON() gives.", field="credential"
        )


def _password(body: dict[str, object], name: str) -> str:
    # Not trimmed: spaces are part of a password.
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise ValidationFailed(f"'{name}' is required and must be a non-empty string.", field=name)
    if len(value) > MAX_PASSWORD_FIELD:
        raise ValidationFailed(f"'{name}' is too long.", field=name)
    return value
