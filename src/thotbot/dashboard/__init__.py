"""The dashboard: server-rendered pages for people (sign-up, sign-in, API keys, security, /docs)."""

from __future__ import annotations

from typing import Any

from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from thotbot.dashboard import sudo
from thotbot.dashboard.errors import exception_handlers as _exception_handlers
from thotbot.dashboard.middleware import SecurityHeaders
from thotbot.dashboard.views import docs, email_password, keys, passkeys, recovery, security, sign_in
from thotbot.services import Services

__all__ = ["exception_handlers", "middleware", "routes"]

_GET, _POST = ["GET"], ["POST"]


def routes(services: Services) -> list[BaseRoute]:
    return [
        Route("/", sign_in.home, methods=_GET),
        Route("/signup", sign_in.signup_form, methods=_GET),
        Route("/signup", sign_in.signup_submit, methods=_POST),
        Route("/login", sign_in.login_form, methods=_GET),
        Route("/login", sign_in.login_submit, methods=_POST),
        Route("/login/passkey/options", passkeys.sign_in_options, methods=_POST),
        Route("/login/passkey", passkeys.sign_in, methods=_POST),
        Route("/logout", sign_in.logout_form, methods=_GET),
        Route("/logout", sign_in.logout_submit, methods=_POST),
        Route("/dashboard", security.overview, methods=_GET),
        Route("/dashboard/api-keys", keys.list_keys, methods=_GET),
        Route("/dashboard/api-keys/new", keys.new_key_form, methods=_GET),
        Route("/dashboard/api-keys/new", keys.create_key, methods=_POST),
        Route("/dashboard/api-keys/integration-mail", keys.set_integration_mail, methods=_POST),
        Route("/dashboard/api-keys/{key_id}", keys.key_detail, methods=_GET),
        Route("/dashboard/api-keys/{key_id}/rename", keys.rename_key, methods=_POST),
        Route("/dashboard/api-keys/{key_id}/roll", keys.roll_key, methods=_POST),
        Route("/dashboard/api-keys/{key_id}/networks", keys.set_key_networks, methods=_POST),
        Route("/dashboard/api-keys/{key_id}/revoke", keys.revoke_key_form, methods=_GET),
        Route("/dashboard/api-keys/{key_id}/revoke", keys.revoke_key, methods=_POST),
        Route("/dashboard/security", security.security, methods=_GET),
        Route("/dashboard/security/email", email_password.change_email, methods=_POST),
        Route("/dashboard/security/email/cancel", email_password.cancel_email_change, methods=_POST),
        Route("/dashboard/security/password", email_password.change_password, methods=_POST),
        Route("/dashboard/security/passkeys/new", passkeys.new_passkey, methods=_POST),
        Route("/dashboard/security/passkeys/options", passkeys.registration_options, methods=_POST),
        Route("/dashboard/security/passkeys", passkeys.add_passkey, methods=_POST),
        Route("/dashboard/security/passkeys/{passkey_id}/rename", passkeys.rename_passkey, methods=_POST),
        Route("/dashboard/security/passkeys/{passkey_id}/remove", passkeys.remove_passkey, methods=_POST),
        Route("/dashboard/sudo/passkey/options", sudo.passkey_options, methods=_POST),
        Route("/dashboard/sudo/passkey", sudo.passkey_verify, methods=_POST),
        Route("/dashboard/security/sessions/end-others", security.end_other_sessions, methods=_POST),
        Route("/dashboard/security/sessions/{session_id}/end", security.end_session, methods=_POST),
        Route("/verify-email", email_password.verify_email_form, methods=_GET),
        Route("/verify-email", email_password.verify_email_confirm, methods=_POST),
        Route("/verify-account", recovery.verify_account_form, methods=_GET),
        Route("/verify-account", recovery.verify_account_confirm, methods=_POST),
        Route("/verify-account/resend", recovery.resend_verification, methods=_POST),
        Route("/forgot-password", recovery.forgot_password_form, methods=_GET),
        Route("/forgot-password", recovery.forgot_password_submit, methods=_POST),
        Route("/reset-password", recovery.reset_password_form, methods=_GET),
        Route("/reset-password", recovery.reset_password_submit, methods=_POST),
        Route("/docs", docs.docs_index, methods=_GET),
        Route("/docs/{name}", docs.docs_page, methods=_GET),
        # Browsers and crawlers ask for /favicon.ico whatever the page's <link rel="icon"> says.
        Route("/favicon.ico", _favicon, methods=_GET),
        Mount("/static", StaticFiles(packages=[("thotbot.dashboard", "static")]), name="static"),
    ]


async def _favicon(request: Request) -> Response:
    return RedirectResponse("/static/favicon.svg", status_code=301)


def middleware(services: Services) -> list[Middleware]:
    return [Middleware(SecurityHeaders)]


def exception_handlers() -> dict[Any, Any]:
    return _exception_handlers()
