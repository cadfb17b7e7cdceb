"""Passkeys on the dashboard: sign in with one alone, and add, rename or remove them.

The WebAuthn ceremonies run in the browser (static/passkeys.js) against the JSON endpoints here;
every other step is a plain form, so the pages work without JavaScript and say where it is needed.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from webauthn.helpers import base64url_to_bytes

from thotbot.core.errors import AccountDisabled, NotFound, ThotbotError, ValidationFailed
from thotbot.dashboard.forms import FormInvalid, parse_passkey_name, safe_next
from thotbot.dashboard.sudo import is_fresh, require_fresh
from thotbot.dashboard.views.security import security_page
from thotbot.dashboard.web import (
    Visit,
    json_error,
    json_response,
    read_form,
    read_json,
    redirect,
    render,
    require_account,
    run,
    signed_in_account,
    start_session,
)
from thotbot.passkey_ceremonies import PasskeyRefused
from thotbot.services import Services
from thotbot.storage import AccountRecord
from thotbot.storage.passkeys import PasskeyRecord

__all__ = [
    "add_passkey",
    "new_passkey",
    "registration_options",
    "remove_passkey",
    "rename_passkey",
    "sign_in",
    "sign_in_options",
]

NEEDS_JAVASCRIPT = (
    "Signing in with a passkey needs JavaScript. Turn it on for this site, or sign in with your "
    "email address and password."
)
UNKNOWN_PASSKEY = (
    "This passkey is not registered with Thotbot: it may have been removed. Sign in with your "
    "email address and password."
)


class FreshSignInRequired(ThotbotError):
    status = 403
    code = "sudo_required"
    title = "Confirm it is you"
    default_detail = "Confirm it is you first: this change needs a sign-in within the last 10 minutes."


def _is_json(request: Request) -> bool:
    return request.headers.get("content-type", "").split(";")[0].strip().lower() == "application/json"


# Signing in with a passkey alone, from /login.


async def sign_in_options(request: Request) -> Response:
    try:
        visit, _ = await read_json(request)
        ceremony = await run(visit.services.passkey_ceremonies.authentication_options)
    except ThotbotError as exc:
        return json_error(exc)
    return json_response(visit, {"challenge_id": ceremony.challenge_id, "options": ceremony.options})


async def sign_in(request: Request) -> Response:
    if not _is_json(request):
        # Only a browser without JavaScript posts the button's form itself.
        visit, form = await read_form(request)
        context = {"next": safe_next(form.get("next")) or "", "passkey_error": NEEDS_JAVASCRIPT}
        return await render(request, visit, "login.html", context, 400)
    try:
        visit, body = await read_json(request)
        passkey, account = await run(lambda: _authenticate(visit.services, body))
    except ThotbotError as exc:
        return json_error(exc)
    await start_session(visit, account, passkey_id=passkey.id)
    await run(lambda: visit.log("session.signed_in", detail=f"passkey {passkey.name!r} ({passkey.id})"))
    return json_response(visit, {"redirect": safe_next(body.get("next")) or "/dashboard"})


def _authenticate(services: Services, body: dict[str, Any]) -> tuple[PasskeyRecord, AccountRecord]:
    credential = body.get("credential")
    try:
        passkey = services.passkey_ceremonies.authenticate(body.get("challenge_id"), credential)
    except PasskeyRefused:
        if _registered(services, credential):
            raise
        raise PasskeyRefused(UNKNOWN_PASSKEY, field="credential") from None
    account = services.users.find(passkey.account_id)
    if account is None:
        raise PasskeyRefused(UNKNOWN_PASSKEY, field="credential")
    if account.disabled:
        raise AccountDisabled("This account is disabled. Contact the operator to have it enabled again.")
    return passkey, account


def _registered(services: Services, credential: object) -> bool:
    raw_id = credential.get("rawId") if isinstance(credential, dict) else None
    try:
        credential_id = base64url_to_bytes(raw_id) if isinstance(raw_id, str) and len(raw_id) < 2048 else b""
    except ValueError:
        return False
    return bool(credential_id) and services.passkeys.find_by_credential_id(credential_id) is not None


# Adding one: the name (a form, through the fresh sign-in check), then the ceremony (JSON).


async def new_passkey(request: Request) -> Response:
    """The Add form without its script, or after a fresh sign-in: a page that starts the ceremony."""
    visit, form = await read_form(request)
    visit = await require_account(request)
    try:
        name = parse_passkey_name(form, "passkey_name")
    except FormInvalid as exc:
        return await security_page(request, visit, errors=exc.errors, values=exc.values, status=400)
    await require_fresh(request, visit, form, f"add the passkey “{name}”")
    return await render(request, visit, "passkey_new.html", {"name": name})


def _fresh_account(visit: Visit) -> str:
    account_id = signed_in_account(visit)
    if not is_fresh(visit):
        raise FreshSignInRequired
    return account_id


async def registration_options(request: Request) -> Response:
    try:
        visit, _ = await read_json(request)
        account_id = _fresh_account(visit)
        security = visit.services.account_security
        ceremony = await run(lambda: security.begin_passkey_registration(account_id))
    except ThotbotError as exc:
        return json_error(exc)
    return json_response(visit, {"challenge_id": ceremony.challenge_id, "options": ceremony.options})


async def add_passkey(request: Request) -> Response:
    try:
        visit, body = await read_json(request)
        account_id = _fresh_account(visit)
        try:
            name = parse_passkey_name({"name": body.get("name")})
        except FormInvalid as exc:
            raise ValidationFailed(exc.errors["name"], field="name") from None
        assert visit.session is not None
        session_id, actor = visit.session.id, visit.as_actor()

        def add() -> None:
            visit.services.account_security.add_passkey(
                account_id, body.get("challenge_id"), body.get("credential"), name, actor
            )
            visit.services.web_sessions.set_flash(
                session_id, f"Passkey “{name}” added. You can sign in with it, without your password."
            )

        await run(add)
    except ThotbotError as exc:
        return json_error(exc)
    return json_response(visit, {"redirect": "/dashboard/security#passkeys"})


# Renaming and removing: plain forms.


async def _own_passkey(request: Request, visit: Visit) -> PasskeyRecord:
    assert visit.account is not None
    account_id, passkey_id = visit.account.id, request.path_params["passkey_id"]
    passkey = await run(lambda: visit.services.passkeys.find(passkey_id, account_id=account_id))
    if passkey is None:
        raise NotFound("You have no passkey with that id.")
    return passkey


async def rename_passkey(request: Request) -> Response:
    visit, form = await read_form(request)
    visit = await require_account(request)
    passkey = await _own_passkey(request, visit)
    field = f"rename_{passkey.id}"
    try:
        name = parse_passkey_name(form)
    except FormInvalid as exc:
        errors, values = {field: exc.errors["name"]}, {field: exc.values["name"]}
        return await security_page(request, visit, errors=errors, values=values, status=400)
    await require_fresh(request, visit, form, f"rename the passkey “{passkey.name}” to “{name}”")
    assert visit.account is not None
    assert visit.session is not None
    account_id, session_id, actor = visit.account.id, visit.session.id, visit.as_actor()

    def rename() -> None:
        visit.services.account_security.rename_passkey(account_id, passkey.id, name, actor)
        visit.services.web_sessions.set_flash(session_id, f"Renamed the passkey to “{name}”.")

    await run(rename)
    return redirect(visit, "/dashboard/security#passkeys")


async def remove_passkey(request: Request) -> Response:
    visit, form = await read_form(request)
    visit = await require_account(request)
    passkey = await _own_passkey(request, visit)
    await require_fresh(request, visit, form, f"remove the passkey “{passkey.name}”")
    assert visit.account is not None
    assert visit.session is not None
    account_id, session_id, actor = visit.account.id, visit.session.id, visit.as_actor()
    services = visit.services

    def remove() -> str | None:
        others = [p for p in services.account_security.list_passkeys(account_id) if p.id != passkey.id]
        if not others and services.users.password_hash(account_id) is None:
            return "This passkey is the only way to sign in to your account, so it cannot be removed."
        services.account_security.remove_passkey(account_id, passkey.id, actor)
        services.web_sessions.set_flash(
            session_id, f"Removed the passkey “{passkey.name}”. It can no longer sign in to your account."
        )
        return None

    refusal = await run(remove)
    if refusal is not None:
        return await security_page(request, visit, errors={"passkeys": refusal}, status=409)
    return redirect(visit, "/dashboard/security#passkeys")
