"""Proving a new account's address, and the forgotten-password pages.

Links from mails open a page whose button (or form) does the work: mail scanners and link previews
fetch links on their own, and a GET that acted would spend the link before its owner clicked it.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from thotbot.account_recovery import RESET_LIFETIME, LinkInvalid
from thotbot.core.errors import RateLimited, ValidationFailed
from thotbot.core.identity import Actor
from thotbot.dashboard.forms import FormInvalid, parse_forgot_password, parse_new_password
from thotbot.dashboard.web import (
    Visit,
    ensure_session,
    flash,
    link_confirm_page,
    plausible_token,
    read_form,
    redirect,
    render,
    require_account,
    run,
)

__all__ = [
    "RESET_COOKIE",
    "forgot_password_form",
    "forgot_password_submit",
    "resend_verification",
    "reset_password_form",
    "reset_password_submit",
    "verify_account_confirm",
    "verify_account_form",
]

#: Holds a reset link's token between the link and the form, so the token leaves the address bar
#: (and so any Referer, history entry or screenshot of the page) at once.
RESET_COOKIE = "thotbot_reset"
RESET_PATH = "/reset-password"


def _actor(visit: Visit) -> Actor:
    """Whoever follows a link or fills in a public form, as mails and the security log name them."""
    if visit.session is not None and visit.session.signed_in:
        return visit.as_actor()
    return Actor.anonymous(visit.ip_address, visit.user_agent)


# Sign-up verification


async def verify_account_form(request: Request) -> Response:
    return await link_confirm_page(request, "verify_account.html")


async def verify_account_confirm(request: Request) -> Response:
    visit, form = await read_form(request)
    token = form.get("token")
    if not plausible_token(token):
        return await render(request, visit, "verify_account.html", {"state": "invalid", "token": ""}, 400)
    recovery, actor = visit.services.account_recovery, _actor(visit)
    try:
        account = await run(lambda: recovery.verify(token, actor))
    except LinkInvalid:
        return await render(request, visit, "verify_account.html", {"state": "invalid", "token": ""}, 400)
    if visit.account is not None and visit.account.id == account.id:
        message = "Your email address is confirmed. You can create API keys now."
        target = "/dashboard/api-keys"
    else:
        message, target = f"The email address {account.email} is confirmed. Sign in with it.", "/login"
        if visit.account is not None:
            message, target = f"The email address {account.email} is confirmed.", "/dashboard"
    await flash(visit, message)
    return redirect(visit, target)


async def resend_verification(request: Request) -> Response:
    visit, _ = await read_form(request)
    visit = await require_account(request)
    assert visit.account is not None
    assert visit.session is not None
    account_id, session_id, actor = visit.account.id, visit.session.id, visit.as_actor()
    services, email = visit.services, visit.account.email

    def resend() -> None:
        try:
            link = services.account_recovery.resend_verification(account_id, actor)
        except (RateLimited, ValidationFailed) as exc:
            services.web_sessions.set_flash(session_id, exc.detail)
            return
        expires = link.expires_at.strftime("%Y-%m-%d %H:%M UTC")
        message = f"We sent a new link to {email}; it works until {expires}."
        services.web_sessions.set_flash(session_id, message)

    await run(resend)
    return redirect(visit, "/dashboard/api-keys")


# Forgotten password


async def forgot_password_form(request: Request) -> Response:
    visit = await ensure_session(request)
    return await render(request, visit, "forgot_password.html", {"state": "ask"})


async def forgot_password_submit(request: Request) -> Response:
    visit, form = await read_form(request)
    try:
        email = parse_forgot_password(form)
    except FormInvalid as exc:
        context = {"state": "ask", "errors": exc.errors, "values": exc.values}
        return await render(request, visit, "forgot_password.html", context, 400)
    recovery, actor = visit.services.account_recovery, _actor(visit)
    try:
        await run(lambda: recovery.request_password_reset(email, actor))
    except RateLimited as exc:
        context = {"state": "ask", "errors": {"email": exc.detail}, "values": {"email": email}}
        response = await render(request, visit, "forgot_password.html", context, 429)
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    # The same page whether or not the address has an account.
    return await render(request, visit, "forgot_password.html", {"state": "sent", "email": email})


async def reset_password_form(request: Request) -> Response:
    visit = await ensure_session(request)
    token = request.query_params.get("token")
    if token is not None:
        if not plausible_token(token):
            return await _reset_invalid(request, visit)
        # Move the token out of the address bar: into a cookie only this page receives.
        response = redirect(visit, RESET_PATH)
        _set_reset_cookie(response, visit, token)
        return response
    account = await _reset_account(request, visit)
    if account is None:
        return await _reset_invalid(request, visit)
    return await render(request, visit, "reset_password.html", {"state": "form", "email": account})


async def reset_password_submit(request: Request) -> Response:
    visit, form = await read_form(request)
    token = request.cookies.get(RESET_COOKIE, "")
    if not plausible_token(token):
        return await _reset_invalid(request, visit)
    recovery, actor = visit.services.account_recovery, _actor(visit)
    try:
        password = parse_new_password(form)
        await run(lambda: recovery.reset_password(token, password, actor))
    except LinkInvalid:
        return await _reset_invalid(request, visit)
    except (FormInvalid, ValidationFailed) as exc:
        errors = exc.errors if isinstance(exc, FormInvalid) else {"password": exc.detail}
        email = await run(lambda: _email_for(visit, token))
        if email is None:
            return await _reset_invalid(request, visit)
        context = {"state": "form", "email": email, "errors": errors}
        return await render(request, visit, "reset_password.html", context, 400)
    # Every session of the account ended, maybe this one: the notice waits in a signed cookie, so
    # no row is kept for a visitor who is not signed in.
    visit.session, visit.end_cookie = None, True
    await flash(visit, "Your new password is set and every session was signed out. Sign in with it.")
    visit.account = None
    response = redirect(visit, "/login")
    _clear_reset_cookie(response, visit)
    return response


async def _reset_account(request: Request, visit: Visit) -> str | None:
    token = request.cookies.get(RESET_COOKIE, "")
    if not plausible_token(token):
        return None
    return await run(lambda: _email_for(visit, token))


def _email_for(visit: Visit, token: str) -> str | None:
    account = visit.services.account_recovery.find_reset(token)
    return account.email if account else None


async def _reset_invalid(request: Request, visit: Visit) -> Response:
    response = await render(request, visit, "reset_password.html", {"state": "invalid"}, 400)
    _clear_reset_cookie(response, visit)
    return response


def _set_reset_cookie(response: Response, visit: Visit, token: str) -> None:
    response.set_cookie(
        RESET_COOKIE,
        token,
        max_age=int(RESET_LIFETIME.total_seconds()),
        path=RESET_PATH,
        secure=visit.services.settings.secure_cookies,
        httponly=True,
        samesite="lax",
    )


def _clear_reset_cookie(response: Response, visit: Visit) -> None:
    response.delete_cookie(
        RESET_COOKIE,
        path=RESET_PATH,
        secure=visit.services.settings.secure_cookies,
        httponly=True,
        samesite="lax",
    )
