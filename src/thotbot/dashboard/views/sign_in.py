"""Sign-up, sign-in and sign-out."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from thotbot.core.accounts import hash_password, verify_password
from thotbot.core.errors import Conflict
from thotbot.core.identity import Actor
from thotbot.dashboard.forms import FormInvalid, parse_sign_in, parse_sign_up, safe_next
from thotbot.dashboard.web import (
    Visit,
    ensure_session,
    flash,
    load_visit,
    read_form,
    redirect,
    render,
    run,
    start_session,
)
from thotbot.storage import AccountRecord
from thotbot.storage.throttle import Attempt

__all__ = [
    "ACCOUNT_DISABLED",
    "home",
    "login_form",
    "login_submit",
    "logout_form",
    "logout_submit",
    "signup_form",
    "signup_submit",
]

# Verifying against this when no account matches costs what a real check costs, so the time a
# failed sign-in takes does not tell whether the email address has an account.
_DUMMY_HASH = hash_password("not a password: only for timing")
DUPLICATE_EMAIL = "An account with this email address already exists. Sign in instead."
BAD_CREDENTIALS = "The email address or password is incorrect."
PAUSED_MESSAGE = (
    "Too many wrong passwords were tried for this account, so signing in with its password is "
    "paused for {minutes} min. You can still sign in with a passkey."
)
# Told only after a correct password: the account's owner needs to know, and nobody else learns it.
ACCOUNT_DISABLED = "This account is disabled. Contact the operator to have it enabled again."


async def home(request: Request) -> Response:
    visit = await load_visit(request)
    return redirect(None, "/dashboard" if visit.account else "/login")


async def signup_form(request: Request) -> Response:
    visit = await ensure_session(request)
    if visit.account is not None:
        return redirect(visit, "/dashboard")
    return await render(request, visit, "signup.html")


async def signup_submit(request: Request) -> Response:
    visit, form = await read_form(request)
    if visit.account is not None:
        return redirect(visit, "/dashboard")
    try:
        signup = parse_sign_up(form)
    except FormInvalid as exc:
        return await render(request, visit, "signup.html", {"errors": exc.errors, "values": exc.values}, 400)
    throttle, ip, values = visit.services.sign_in_throttle, visit.ip_address, {"email": signup.email}
    wait = await run(lambda: throttle.address_retry_after(ip))
    if wait:
        context = {"errors": {"email": _too_many(wait)}, "values": values}
        return await render(request, visit, "signup.html", context, 429)
    wait = await run(lambda: visit.services.account_recovery.sign_up_wait(ip))
    if wait:
        return await _too_many_sign_ups(request, visit, values, wait)
    password_hash = await run(lambda: hash_password(signup.password))
    try:
        account = await run(lambda: visit.services.users.create(signup.email, password_hash, verified=False))
    except Conflict:
        # Said plainly, because people need to know; nothing else about the account is told. It
        # counts against the address like a failed sign-in, so nobody can probe many emails here.
        await run(lambda: throttle.record_address_failure(ip))
        context = {"errors": {"email": DUPLICATE_EMAIL}, "values": values}
        return await render(request, visit, "signup.html", context, 400)
    await start_session(visit, account)
    await run(lambda: _after_sign_up(visit, account))
    return redirect(visit, "/dashboard")


async def _too_many_sign_ups(request: Request, visit: Visit, values: dict[str, str], wait: int) -> Response:
    minutes = -(-wait // 60)
    message = (
        "Too many accounts were created from your network in the last hour. "
        f"Try again in {minutes} minute{'s' if minutes != 1 else ''}."
    )
    context = {"errors": {"email": message}, "values": values}
    response = await render(request, visit, "signup.html", context, 429)
    response.headers["Retry-After"] = str(wait)
    return response


def _after_sign_up(visit: Visit, account: AccountRecord) -> None:
    visit.log("account.created", detail="signed up on the dashboard; email address not verified yet")
    visit.log("session.signed_in", detail="password, right after sign-up")
    assert visit.session is not None
    visit.services.account_recovery.send_verification(account, visit.as_actor())
    visit.services.web_sessions.set_flash(
        visit.session.id,
        f"Welcome to Thotbot. We sent a link to {account.email}: follow it to confirm your address, "
        "then create your first API key.",
    )


async def login_form(request: Request) -> Response:
    visit = await ensure_session(request)
    next_path = safe_next(request.query_params.get("next"))
    if visit.account is not None:
        return redirect(visit, next_path or "/dashboard")
    return await render(request, visit, "login.html", {"next": next_path or ""})


async def login_submit(request: Request) -> Response:
    visit, form = await read_form(request)
    next_path = safe_next(form.get("next"))
    context = {"next": next_path or "", "values": {"email": str(form.get("email", ""))[:320]}}
    try:
        signin = parse_sign_in(form)
    except FormInvalid as exc:
        return await render(request, visit, "login.html", {**context, "errors": exc.errors}, 400)
    services, ip = visit.services, visit.ip_address
    # The attempt is counted before the password is checked, in one step with the check of the
    # waits, so a burst of guesses cannot all pass the same check (storage/throttle.py).
    attempt = await run(lambda: services.sign_in_throttle.reserve(signin.email, ip))
    if not attempt.allowed:
        errors = _throttled(attempt.retry_after, paused=attempt.account_paused)
        return await render(request, visit, "login.html", {**context, "errors": errors}, 429)
    account = await run(lambda: _check_password(visit, signin.email, signin.password))
    if account is None:
        await run(lambda: _failed(visit, signin.email, attempt))
        wait = attempt.wait_if_wrong
        errors = _throttled(wait, paused=attempt.pauses_account) if wait else {"password": BAD_CREDENTIALS}
        return await render(request, visit, "login.html", {**context, "errors": errors}, 429 if wait else 400)
    if account.disabled:
        errors = {"password": ACCOUNT_DISABLED}
        return await render(request, visit, "login.html", {**context, "errors": errors}, 403)
    await start_session(visit, account)
    await run(lambda: _after_sign_in(visit, signin.email))
    return redirect(visit, next_path or "/dashboard")


def _check_password(visit: Visit, email: str, password: str) -> AccountRecord | None:
    users = visit.services.users
    account = users.find_by_email(email)
    password_hash = users.password_hash(account.id) if account else None
    if account is None or password_hash is None:
        verify_password(_DUMMY_HASH, password)
        return None
    return account if verify_password(password_hash, password) else None


def _too_many(wait: int) -> str:
    unit = "second" if wait == 1 else "seconds"
    return f"Too many failed attempts. Wait {wait} {unit}, then try again."


def _throttled(wait: int, *, paused: bool = False) -> dict[str, str]:
    if paused:
        # Said for an unknown email too (its attempts are counted alike), so it tells nothing.
        return {"password": PAUSED_MESSAGE.format(minutes=-(-wait // 60))}
    return {"password": _too_many(wait)}


def _failed(visit: Visit, email: str, attempt: Attempt) -> None:
    account = visit.services.users.find_by_email(email)
    if account is None:
        return
    wait = attempt.wait_if_wrong
    detail = "wrong password" + (f"; further attempts slowed for {wait} s" if wait else "")
    visit.log("session.sign_in_failed", detail=detail, account_id=account.id)
    if attempt.pauses_account:
        actor = Actor(visit.actor, visit.ip_address, visit.user_agent)
        visit.services.account_security.password_paused(account.id, actor, until=attempt.paused_until)


def _after_sign_in(visit: Visit, email: str) -> None:
    visit.services.sign_in_throttle.record_success(email, visit.ip_address)
    visit.services.sign_in_throttle.prune()
    visit.log("session.signed_in", detail="password")


async def logout_form(request: Request) -> Response:
    visit = await load_visit(request)
    if visit.account is None:
        return redirect(visit, "/login")
    return await render(request, visit, "logout.html")


async def logout_submit(request: Request) -> Response:
    visit, _ = await read_form(request)
    session = visit.session
    if visit.account is None or session is None:
        return redirect(visit, "/login")
    store = visit.services.web_sessions

    def end() -> None:
        visit.log("session.signed_out")
        store.delete(session.id)

    await run(end)
    visit.session, visit.account, visit.end_cookie = None, None, True
    # Signed out, the goodbye waits in a signed cookie: no row is kept for someone who left.
    await flash(visit, "You have signed out.")
    return redirect(visit, "/login")
