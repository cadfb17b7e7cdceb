"""Fresh sign-in ("sudo mode"): sensitive changes need a password or passkey proof within 10 minutes.

A handler calls ``require_fresh`` just before it acts. When the session's last proof is older, the
visitor gets a "Confirm it's you" page instead, holding what they submitted as hidden fields of
a form that posts back to the same address with their password. Nothing is stored meanwhile, and
nothing typed is lost: after the proof, the same handler runs again with the same fields and
carries on. A passkey proof goes through the JSON endpoints below first, then the script submits
that same form. The fields are the visitor's own (names, choices, an email address); passwords
are never among them, and no key exists yet at that point.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime, timedelta

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from thotbot.core.accounts import verify_password
from thotbot.core.dates import utcnow
from thotbot.core.errors import ThotbotError
from thotbot.dashboard.web import (
    Visit,
    json_error,
    json_response,
    load_visit,
    read_json,
    render,
    run,
    signed_in_account,
)
from thotbot.passkey_ceremonies import Ceremony

__all__ = [
    "FRESH_SIGN_IN",
    "SudoRequired",
    "is_fresh",
    "passkey_options",
    "passkey_verify",
    "require_fresh",
    "sudo_required",
]

FRESH_SIGN_IN = timedelta(minutes=10)
#: Fields of the confirmation form itself, never carried over to the action.
_OWN_FIELDS = frozenset({"csrf_token", "sudo", "sudo_password", "sudo_passkey"})
WRONG_PASSWORD = "The password is incorrect."  # noqa: S105 - a message, not a password
PAUSED_MESSAGE = (
    "Too many wrong passwords were tried for your account, so its password is paused for a while. "
    "Use a passkey instead."
)
NEEDS_JAVASCRIPT = "Passkeys need JavaScript. Turn it on for this site, or enter your password."


class SudoRequired(Exception):
    """Ask the visitor to prove it is them, then resubmit ``fields`` to the same address."""

    def __init__(
        self, action: str, fields: Sequence[tuple[str, str]], *, error: str | None = None, status: int = 200
    ) -> None:
        super().__init__(action)
        self.action = action
        self.fields = list(fields)
        self.error = error
        self.status = status


def is_fresh(visit: Visit, now: datetime | None = None) -> bool:
    session = visit.session
    if session is None or session.authenticated_at is None:
        return False
    return (now or utcnow()) - session.authenticated_at < FRESH_SIGN_IN


async def require_fresh(request: Request, visit: Visit, form: FormData, action: str) -> None:
    """Return when the session signed in recently or the form carries the right password;
    else raise SudoRequired. ``action`` completes "To ..., confirm it is you"."""
    if is_fresh(visit):
        return
    fields = [(k, v) for k, v in form.multi_items() if isinstance(v, str) and _carried(k)]
    password = form.get("sudo_password")
    if isinstance(password, str) and password:
        error, status = await _check_password(visit, password[:1024])
        if error is None:
            return
        raise SudoRequired(action, fields, error=error, status=status)
    if form.get("sudo_passkey"):
        raise SudoRequired(action, fields, error=NEEDS_JAVASCRIPT, status=400)
    error = "Enter your password, or use a passkey." if form.get("sudo") else None
    raise SudoRequired(action, fields, error=error, status=400 if error else 200)


def _carried(name: str) -> bool:
    return name not in _OWN_FIELDS and "password" not in name


async def _check_password(visit: Visit, password: str) -> tuple[str | None, int]:
    """(None, 200) when right, and the session is marked freshly signed in; else the error."""
    assert visit.account is not None
    account, services = visit.account, visit.services
    throttle = services.sign_in_throttle
    # Counted before the password is checked, in one step with the check of the waits.
    attempt = await run(lambda: throttle.reserve(account.email, visit.ip_address))
    if not attempt.allowed:
        if attempt.account_paused:
            return PAUSED_MESSAGE, 429
        return _throttled(attempt.retry_after), 429

    def check() -> bool:
        if not verify_password(services.users.password_hash(account.id), password):
            wait = attempt.wait_if_wrong
            detail = "wrong password when confirming a change"
            visit.log("session.sign_in_failed", detail=detail + (f"; slowed for {wait} s" if wait else ""))
            if attempt.pauses_account:
                until = attempt.paused_until
                services.account_security.password_paused(account.id, visit.as_actor(), until=until)
            return False
        throttle.record_success(account.email, visit.ip_address)
        _mark_fresh(visit, "password")
        return True

    if await run(check):
        return None, 200
    return WRONG_PASSWORD, 400


def _throttled(wait: int) -> str:
    return f"Too many failed attempts. Wait {wait} second{'s' if wait != 1 else ''}, then try again."


def _mark_fresh(visit: Visit, how: str) -> None:
    """Blocking: note the proof on the session (and on this request's copy of it), and log it."""
    assert visit.session is not None
    now = utcnow()
    visit.services.web_sessions.reauthenticate(visit.session.id, now=now)
    visit.session = dataclasses.replace(visit.session, authenticated_at=now)
    visit.log("session.reauthenticated", detail=how)


async def sudo_required(request: Request, exc: Exception) -> Response:
    """The exception handler: the "Confirm it's you" page."""
    assert isinstance(exc, SudoRequired)
    visit = await load_visit(request)
    session = visit.session
    account_id = visit.account.id if visit.account else ""
    context = {
        "action": exc.action,
        "form_action": request.url.path,
        "fields": exc.fields,
        "errors": {"sudo_password": exc.error} if exc.error else {},
        "signed_in_at": session.authenticated_at if session else None,
        "has_passkeys": bool(await run(lambda: visit.services.account_security.list_passkeys(account_id)))
        if account_id
        else False,
    }
    return await render(request, visit, "sudo.html", context, exc.status)


# The passkey proof, for the script on the confirmation page.


async def passkey_options(request: Request) -> Response:
    try:
        visit, _ = await read_json(request)
        account = signed_in_account(visit)
        ceremony: Ceremony = await run(
            lambda: visit.services.passkey_ceremonies.authentication_options(account_id=account)
        )
    except ThotbotError as exc:
        return json_error(exc)
    if not ceremony.options.get("allowCredentials"):
        return json_response(
            visit,
            {"code": "no_passkeys", "detail": "You have no passkey yet. Enter your password instead."},
            409,
        )
    return json_response(visit, {"challenge_id": ceremony.challenge_id, "options": ceremony.options})


async def passkey_verify(request: Request) -> Response:
    try:
        visit, body = await read_json(request)
        account = signed_in_account(visit)

        def verify() -> None:
            passkey = visit.services.passkey_ceremonies.authenticate(
                body.get("challenge_id"), body.get("credential"), account_id=account
            )
            _mark_fresh(visit, f"passkey {passkey.name!r} ({passkey.id})")

        await run(verify)
    except ThotbotError as exc:
        return json_error(exc)
    return json_response(visit, {"status": "confirmed"})
