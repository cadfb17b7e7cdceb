"""Request glue shared by the views: the visitor's session, forms, rendering, cookies, redirects."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeGuard, TypeVar
from urllib.parse import quote

import anyio.to_thread
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from thotbot.core.cookies import CSRF_COOKIE, FLASH_COOKIE, SESSION_COOKIE, cookie_name
from thotbot.core.dates import utcnow
from thotbot.core.errors import ThotbotError, ValidationFailed
from thotbot.core.identity import Actor
from thotbot.dashboard.csrf import (
    CSRFFailed,
    check_origin,
    cookie_secret,
    mask_token,
    new_cookie_value,
    plausible_cookie_value,
    verify_token,
)
from thotbot.dashboard.flash import read_flash, sign_flash
from thotbot.dashboard.templating import templates
from thotbot.services import Services
from thotbot.storage import AccountRecord
from thotbot.storage.web_sessions import SessionRecord

__all__ = [
    "NO_STORE",
    "SignInRequired",
    "Visit",
    "ensure_session",
    "flash",
    "json_error",
    "json_response",
    "link_confirm_page",
    "load_visit",
    "login_url",
    "plausible_token",
    "read_form",
    "read_json",
    "redirect",
    "render",
    "require_account",
    "run",
    "signed_in_account",
    "start_session",
]

T = TypeVar("T")
#: Every dashboard page is private to its viewer; the one that shows a new key must never be kept.
NO_STORE = {"cache-control": "no-store", "pragma": "no-cache"}
MAX_FORM_FIELDS = 50
#: A flash waits in its cookie for the next page, not for a visitor who never comes back.
FLASH_MAX_AGE = 300


async def run(func: Callable[[], T]) -> T:
    """Run blocking work (the database) in a worker thread, off the event loop."""
    return await anyio.to_thread.run_sync(func)


class SignInRequired(Exception):
    """The page needs a signed-in visitor; the handler sends them to /login and back here."""

    def __init__(self, next_path: str | None) -> None:
        super().__init__(next_path)
        self.next_path = next_path


@dataclass
class Visit:
    """One request's visitor: their session and account (if any), and where they come from."""

    services: Services
    session: SessionRecord | None
    account: AccountRecord | None
    ip_address: str | None
    user_agent: str | None
    #: A new session token for the response's cookie; None leaves the cookie as it is.
    new_token: str | None = None
    end_cookie: bool = False
    #: Not signed in: the CSRF cookie's value (signed double submit), and whether to set it.
    csrf_cookie: str | None = None
    new_csrf_cookie: bool = False
    #: Not signed in: the flash cookie as it came, and the signed one to send (or "" to clear it).
    flash_cookie: str | None = None
    new_flash_cookie: str | None = None

    @property
    def actor(self) -> str:
        """Who acts, for the security log: a signed-in session, or someone not signed in."""
        if self.session is not None and self.session.signed_in:
            return f"session:{self.session.id}"
        return "anonymous"

    def as_actor(self) -> Actor:
        """The visitor as account_security and the notifier take them: this session, from here."""
        if self.session is None:
            return Actor.visitor(self.ip_address, self.user_agent)
        return Actor.session(self.session.id, self.ip_address, self.user_agent)

    def log(self, action: str, *, key_id: str | None = None, detail: str = "", account_id: str = "") -> None:
        """Write to the security log (blocking: call it through run)."""
        owner = account_id or (self.account.id if self.account else None)
        self.services.security_log.record(
            owner,
            action,
            actor=self.actor,
            key_id=key_id,
            detail=detail,
            ip_address=self.ip_address,
            user_agent=self.user_agent,
        )


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def load_visit(request: Request) -> Visit:
    cached: Visit | None = getattr(request.state, "visit", None)
    if cached is not None:
        return cached
    services = _services(request)
    ip_address = request.client.host if request.client else None
    user_agent = request.headers.get("user-agent")
    secure = services.settings.secure_cookies
    token = request.cookies.get(cookie_name(SESSION_COOKIE, secure), "")
    session = account = None
    if token:
        session = await run(
            lambda: services.web_sessions.find_by_token(token, ip_address=ip_address, user_agent=user_agent)
        )
    if session is not None and session.account_id is not None:
        account = await run(lambda: services.users.find(session.account_id or ""))
        if account is not None and account.disabled:
            account = None  # its sessions were ended when it was disabled; this one is stale
    visit = Visit(services, session, account, ip_address, user_agent)
    csrf_cookie = request.cookies.get(cookie_name(CSRF_COOKIE, secure))
    visit.csrf_cookie = csrf_cookie if plausible_cookie_value(csrf_cookie) else None
    visit.flash_cookie = request.cookies.get(cookie_name(FLASH_COOKIE, secure))
    request.state.visit = visit
    return visit


async def require_account(request: Request) -> Visit:
    visit = await load_visit(request)
    if visit.account is None:
        path = request.url.path
        raise SignInRequired(path if request.method in ("GET", "HEAD") else None)
    return visit


async def ensure_session(request: Request) -> Visit:
    """The visitor, ready to be shown a form: its CSRF token comes from their session if they are
    signed in, else from the double-submit cookie, set here if missing.

    It writes nothing: a page anyone can load must not be a way to fill the database. The session
    row is made only when a sign-in or sign-up form is posted (start_session).
    """
    visit = await load_visit(request)
    _ensure_csrf_cookie(visit)
    return visit


def _ensure_csrf_cookie(visit: Visit) -> None:
    if visit.session is None and visit.csrf_cookie is None:
        visit.csrf_cookie, visit.new_csrf_cookie = new_cookie_value(), True


async def _web_key(services: Services) -> bytes:
    """The instances' shared signing key: from memory, after the first time."""
    cached = services.web_key.cached
    return cached if cached is not None else await run(services.web_key.get)


async def _csrf_secret(visit: Visit) -> str:
    if visit.session is not None:
        return visit.session.csrf_secret
    if visit.csrf_cookie is None:
        raise CSRFFailed
    return cookie_secret(await _web_key(visit.services), visit.csrf_cookie)


async def flash(visit: Visit, message: str) -> None:
    """Keep a one-time notice for the visitor's next page: in their session, or else a cookie."""
    if visit.session is not None:
        session_id = visit.session.id
        await run(lambda: visit.services.web_sessions.set_flash(session_id, message))
    else:
        visit.new_flash_cookie = sign_flash(await _web_key(visit.services), message)


async def start_session(visit: Visit, account: AccountRecord, *, passkey_id: str | None = None) -> None:
    """Sign in: a brand-new session replaces whatever session the visitor had (no fixation).

    ``passkey_id`` names the passkey that signed in, so that removing it ends this session."""
    store = visit.services.web_sessions
    old = visit.session.id if visit.session else None

    def create() -> tuple[str, SessionRecord]:
        store.prune()
        return store.create(
            account.id,
            ip_address=visit.ip_address,
            user_agent=visit.user_agent,
            replaces=old,
            passkey_id=passkey_id,
        )

    visit.new_token, visit.session = await run(create)
    visit.account = account


async def _load_same_site_visit(request: Request) -> Visit:
    visit = await load_visit(request)
    check_origin(
        request.headers.get("origin"),
        request.headers.get("sec-fetch-site"),
        request.headers.get("host"),
        visit.services.settings.public_url,
    )
    return visit


async def read_form(request: Request) -> tuple[Visit, FormData]:
    """Parse a posted form and check it: from this site, in a live session, with its CSRF token."""
    visit = await _load_same_site_visit(request)
    form = await request.form(max_files=0, max_fields=MAX_FORM_FIELDS)
    verify_token(await _csrf_secret(visit), form.get("csrf_token"))
    return visit, form


async def read_json(request: Request) -> tuple[Visit, dict[str, object]]:
    """A JSON body posted by the dashboard's passkey script, checked like a form.

    The CSRF token travels in the ``X-CSRF-Token`` header. Only ``application/json`` is read: no
    other site can send that content type, nor the header, without the browser asking us first.
    """
    visit = await _load_same_site_visit(request)
    verify_token(await _csrf_secret(visit), request.headers.get("x-csrf-token"))
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        raise ValidationFailed("Send the request as application/json.")
    try:
        body = json.loads(await request.body() or b"{}")
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ValidationFailed("The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise ValidationFailed("The request body must be a JSON object.")
    return visit, body


def json_response(visit: Visit | None, data: dict[str, object], status: int = 200) -> Response:
    response = JSONResponse(data, status_code=status, headers=NO_STORE)
    if visit is not None:
        _apply_cookie(response, visit)
    return response


def json_error(exc: ThotbotError) -> Response:
    """A refusal for the passkey script, which shows its detail as it is: it is written for people."""
    body: dict[str, object] = {"code": exc.code, "detail": exc.detail}
    if isinstance(exc.extra.get("field"), str):
        body["field"] = exc.extra["field"]
    return json_response(None, body, exc.status)


class NotSignedIn(ThotbotError):
    status = 401
    code = "sign_in_required"
    title = "Sign in"
    default_detail = "Your session has ended. Reload the page and sign in again."


def signed_in_account(visit: Visit) -> str:
    """The signed-in account's id, for the JSON endpoints (NotSignedIn, not a redirect)."""
    if visit.account is None:
        raise NotSignedIn
    return visit.account.id


async def render(
    request: Request, visit: Visit, template: str, context: dict[str, Any] | None = None, status: int = 200
) -> Response:
    _ensure_csrf_cookie(visit)
    notice = await _pop_flash(visit)
    page: dict[str, Any] = {
        "account": visit.account,
        "visit": visit,
        "csrf_token": mask_token(await _csrf_secret(visit)),
        "flash": notice,
        "now": utcnow(),
        "public_url": visit.services.settings.public_url,
        # Without THOTBOT_SMTP_URL mail is written to the server's log: pages that promise a mail say so.
        "mail_to_log": visit.services.settings.smtp_url is None,
        "errors": {},
        "values": {},
    }
    page.update(context or {})
    response = templates.TemplateResponse(request, template, page, status_code=status, headers=NO_STORE)
    _apply_cookie(response, visit)
    return response


async def _pop_flash(visit: Visit) -> str | None:
    session = visit.session
    if session is not None and session.flash is not None:
        return await run(lambda: visit.services.web_sessions.pop_flash(session.id))
    if session is None and visit.flash_cookie and visit.new_flash_cookie is None:
        visit.new_flash_cookie = ""
        return read_flash(await _web_key(visit.services), visit.flash_cookie)
    return None


def redirect(visit: Visit | None, url: str) -> Response:
    response = RedirectResponse(url, status_code=303, headers=NO_STORE)
    if visit is not None:
        _apply_cookie(response, visit)
    return response


#: Longer than any token a mailed link carries (43 characters); anything longer is not ours.
MAX_TOKEN = 128


def plausible_token(token: object) -> TypeGuard[str]:
    """Whether a mailed link's token is worth a database lookup: short, printable ASCII."""
    return isinstance(token, str) and 0 < len(token) <= MAX_TOKEN and token.isascii() and token.isprintable()


async def link_confirm_page(request: Request, template: str) -> Response:
    """The page a mailed single-use link opens: a Confirm button that posts the token.

    Mail scanners and link previews fetch links on their own; a GET that applied the change would
    spend the link before its owner clicked it.
    """
    visit = await ensure_session(request)
    token = request.query_params.get("token", "")
    if not plausible_token(token):
        return await render(request, visit, template, {"state": "invalid", "token": ""}, 400)
    return await render(request, visit, template, {"state": "confirm", "token": token})


def login_url(next_path: str | None) -> str:
    return "/login" if not next_path else "/login?next=" + quote(next_path, safe="/")


def _apply_cookie(response: Response, visit: Visit) -> None:
    # Every cookie is HttpOnly, Lax, Path=/ and without Domain, so on https the __Host- names hold.
    secure = visit.services.settings.secure_cookies
    session_name = cookie_name(SESSION_COOKIE, secure)
    if visit.new_token is not None and visit.session is not None:
        max_age = int((visit.session.expires_at - utcnow()).total_seconds())
        response.set_cookie(
            session_name,
            visit.new_token,
            max_age=max(max_age, 0),
            path="/",
            secure=secure,
            httponly=True,
            samesite="lax",
        )
    elif visit.end_cookie:
        response.delete_cookie(session_name, path="/", secure=secure, httponly=True, samesite="lax")
    if visit.new_csrf_cookie and visit.csrf_cookie is not None:
        # A browser-session cookie: any tab's form keeps working until the browser closes.
        response.set_cookie(
            cookie_name(CSRF_COOKIE, secure), visit.csrf_cookie, path="/", secure=secure, httponly=True
        )
    if visit.new_flash_cookie:
        response.set_cookie(
            cookie_name(FLASH_COOKIE, secure),
            visit.new_flash_cookie,
            max_age=FLASH_MAX_AGE,
            path="/",
            secure=secure,
            httponly=True,
        )
    elif visit.new_flash_cookie == "":
        response.delete_cookie(cookie_name(FLASH_COOKIE, secure), path="/", secure=secure, httponly=True)
