"""The Security page's email and password forms, and the email verification link's page."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from thotbot.account_security import WrongPassword
from thotbot.core.errors import Conflict, RateLimited, ValidationFailed
from thotbot.dashboard.forms import FormInvalid, parse_email_change, parse_password_change
from thotbot.dashboard.sudo import require_fresh
from thotbot.dashboard.views.security import security_page
from thotbot.dashboard.web import (
    flash,
    link_confirm_page,
    plausible_token,
    read_form,
    redirect,
    render,
    require_account,
    run,
)
from thotbot.storage.email_changes import EmailChangeTokenInvalid

__all__ = [
    "cancel_email_change",
    "change_email",
    "change_password",
    "verify_email_confirm",
    "verify_email_form",
]


async def change_email(request: Request) -> Response:
    visit, form = await read_form(request)
    visit = await require_account(request)
    assert visit.account is not None
    assert visit.session is not None
    try:
        email = parse_email_change(form)
    except FormInvalid as exc:
        return await security_page(request, visit, errors=exc.errors, values=exc.values, status=400)
    await require_fresh(request, visit, form, f"change your email address to {email}")
    account_id, session_id, actor = visit.account.id, visit.session.id, visit.as_actor()
    security = visit.services.account_security

    def request_change() -> None:
        # The same answer whether or not the address has an account: that one gets a notice instead.
        security.request_email_change(account_id, email, actor)
        visit.services.web_sessions.set_flash(
            session_id,
            f"Check your inbox at {email}: we sent a link to confirm the change. Your email address "
            "changes only when you follow it, within 24 hours.",
        )

    try:
        await run(request_change)
    except RateLimited as exc:
        errors = {"email": exc.detail}
        response = await security_page(request, visit, errors=errors, values={"email": email}, status=429)
        response.headers["retry-after"] = str(exc.retry_after)
        return response
    except ValidationFailed as exc:
        errors = {"email": exc.detail}
        return await security_page(request, visit, errors=errors, values={"email": email}, status=400)
    return redirect(visit, "/dashboard/security#email-address")


async def cancel_email_change(request: Request) -> Response:
    """The owner cancels the pending change: its link stops working. No fresh sign-in is asked:
    cancelling only takes a way into the account away."""
    visit, _ = await read_form(request)
    visit = await require_account(request)
    assert visit.account is not None
    assert visit.session is not None
    account_id, session_id, actor = visit.account.id, visit.session.id, visit.as_actor()
    services = visit.services

    def cancel() -> None:
        security = services.account_security
        cancelled = security.cancel_email_changes(account_id, "cancelled by the owner", actor)
        message = (
            "Email change cancelled: the link we sent no longer works."
            if cancelled
            else "There was no pending email change to cancel."
        )
        services.web_sessions.set_flash(session_id, message)

    await run(cancel)
    return redirect(visit, "/dashboard/security#email-address")


async def change_password(request: Request) -> Response:
    """The current password is the proof asked for: a correct one counts as a fresh sign-in."""
    visit, form = await read_form(request)
    visit = await require_account(request)
    assert visit.account is not None
    assert visit.session is not None
    try:
        change = parse_password_change(form)
    except FormInvalid as exc:
        return await security_page(request, visit, errors=exc.errors, status=400)
    account_id, session_id, actor = visit.account.id, visit.session.id, visit.as_actor()
    services = visit.services

    def apply() -> int:
        ended = services.account_security.change_password(account_id, change.current, change.new, actor)
        services.web_sessions.reauthenticate(session_id)
        others = "No other session was signed in." if not ended else _ended(ended)
        services.web_sessions.set_flash(session_id, f"Password changed. {others}")
        return ended

    try:
        await run(apply)
    except WrongPassword:
        return await _password_error(request, "current_password", "The current password is incorrect.")
    except RateLimited as exc:
        wait = exc.retry_after
        message = f"Too many failed attempts. Wait {wait} second{'s' if wait != 1 else ''}, then try again."
        return await _password_error(request, "current_password", message, 429)
    except ValidationFailed as exc:
        return await _password_error(request, "new_password", exc.detail)
    return redirect(visit, "/dashboard/security#password")


def _ended(count: int) -> str:
    return f"{count} other session{'s were' if count != 1 else ' was'} signed out."


async def _password_error(request: Request, field: str, message: str, status: int = 400) -> Response:
    visit = await require_account(request)
    return await security_page(request, visit, errors={field: message}, status=status)


async def verify_email_form(request: Request) -> Response:
    """The link in the mail opens this page; only its button changes anything."""
    return await link_confirm_page(request, "verify_email.html")


async def verify_email_confirm(request: Request) -> Response:
    visit, form = await read_form(request)
    token = form.get("token")
    if not plausible_token(token):
        return await render(request, visit, "verify_email.html", {"state": "invalid", "token": ""}, 400)
    actor = visit.as_actor()
    security = visit.services.account_security
    try:
        account = await run(lambda: security.confirm_email_change(token, actor))
    except EmailChangeTokenInvalid:
        return await render(request, visit, "verify_email.html", {"state": "invalid", "token": ""}, 400)
    except Conflict:
        return await render(request, visit, "verify_email.html", {"state": "taken", "token": ""}, 409)
    if visit.account is None:
        message, target = f"Your email address is now {account.email}. Sign in with it.", "/login"
    elif visit.account.id == account.id:
        message, target = f"Your email address is now {account.email}.", "/dashboard/security#email-address"
    else:
        message = (
            f"That account's email address is now {account.email}. "
            f"You are still signed in here as {visit.account.email}."
        )
        target = "/dashboard"
    await flash(visit, message)
    return redirect(visit, target)
