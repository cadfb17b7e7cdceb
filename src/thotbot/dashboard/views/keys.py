"""The API Keys pages: list, Create New Key (shown once), rename, roll, revoke, and the key's IP
allowlist (which, like a roll, needs a fresh sign-in)."""

from __future__ import annotations

import re
import secrets
from datetime import timedelta

from starlette.requests import Request
from starlette.responses import Response

from thotbot.core.dates import utcnow
from thotbot.core.errors import Conflict, NotFound, ValidationFailed
from thotbot.core.networks import parse_networks
from thotbot.dashboard.forms import (
    DEFAULT_EXPIRY,
    DEFAULT_ROLL,
    EXPIRY_CHOICES,
    ROLL_CHOICES,
    FormInvalid,
    NewKey,
    parse_new_key,
    parse_rename,
    parse_roll,
)
from thotbot.dashboard.sudo import require_fresh
from thotbot.dashboard.views.key_requests import KeyRequestsPanel, key_requests
from thotbot.dashboard.views.key_usage import KeyUsagePanel, key_usage
from thotbot.dashboard.web import Visit, read_form, redirect, render, require_account, run
from thotbot.storage import KeyRecord

__all__ = [
    "create_key",
    "key_detail",
    "list_keys",
    "new_key_form",
    "rename_key",
    "revoke_key",
    "revoke_key_form",
    "roll_key",
    "set_integration_mail",
    "set_key_networks",
]

#: What the allowlist's text area may hold: 100 networks of up to 43 characters, and some slack.
_MAX_NETWORKS_TEXT = 8192

_FORM_DEFAULTS = {"name": "", "expiry": DEFAULT_EXPIRY, "expiry_date": "", "access": "full"}


async def _own_key(request: Request, visit: Visit) -> KeyRecord:
    """The account's key named in the path; NotFound for anyone else's, so ids reveal nothing."""
    key_id = request.path_params["key_id"]
    assert visit.account is not None
    account_id = visit.account.id
    record = await run(lambda: visit.services.keys.find(key_id)) if len(key_id) <= 32 else None
    if record is None or record.account_id != account_id:
        raise NotFound("You have no API key with that id.")
    return record


async def list_keys(request: Request) -> Response:
    visit = await require_account(request)
    assert visit.account is not None
    account_id = visit.account.id
    records = await run(lambda: visit.services.keys.list_for_account(account_id))
    mail = await run(lambda: visit.services.failing.integration_mail(account_id))
    context = {
        "keys": records,
        "integration_mail": mail,
        "default_rate_limit": visit.services.settings.rate_limit,
    }
    return await render(request, visit, "api_keys.html", context)


async def set_integration_mail(request: Request) -> Response:
    """The daily mail about failing keys, on or off. No fresh sign-in: turning a mail off (or back
    on) gives nobody anything, and the form is CSRF-protected like every other."""
    visit, form = await read_form(request)
    visit = await require_account(request)
    assert visit.account is not None
    assert visit.session is not None
    choice = form.get("integration_mail")
    if choice not in ("on", "off"):
        raise ValidationFailed("Choose on or off for the mail about failing keys.")
    account_id, session_id, on = visit.account.id, visit.session.id, choice == "on"

    def save() -> None:
        visit.services.failing.set_integration_mail(account_id, on)
        message = "You will get a mail when a key mostly fails." if on else "No more mail about failing keys."
        visit.services.web_sessions.set_flash(session_id, message)

    await run(save)
    return redirect(visit, "/dashboard/api-keys#integration-mail")


def _new_key_context(values: dict[str, str], errors: dict[str, str] | None = None) -> dict[str, object]:
    return {
        "values": values,
        "errors": errors or {},
        "expiry_choices": EXPIRY_CHOICES,
        "form_token": secrets.token_urlsafe(24),
        "tomorrow": (utcnow() + timedelta(days=1)).date().isoformat(),
    }


async def _verify_first(request: Request, visit: Visit) -> Response:
    """Create New Key on an account whose address is not proven yet: say so, offer a new link."""
    assert visit.account is not None
    account_id = visit.account.id
    pending = await run(lambda: visit.services.account_recovery.verification_pending(account_id))
    return await render(request, visit, "verify_first.html", {"pending": pending}, 403)


async def new_key_form(request: Request) -> Response:
    visit = await require_account(request)
    assert visit.account is not None
    if not visit.account.verified:
        return await _verify_first(request, visit)
    return await render(request, visit, "key_new.html", _new_key_context(dict(_FORM_DEFAULTS)))


async def create_key(request: Request) -> Response:
    visit, form = await read_form(request)
    visit = await require_account(request)
    assert visit.account is not None
    if not visit.account.verified:
        return await _verify_first(request, visit)
    try:
        wanted = parse_new_key(form, utcnow())
    except FormInvalid as exc:
        context = _new_key_context({**_FORM_DEFAULTS, **exc.values}, exc.errors)
        return await render(request, visit, "key_new.html", context, 400)
    await require_fresh(request, visit, form, f"create the API key “{wanted.name}”")
    if not await _spend(visit, form.get("form_token")):
        return await render(request, visit, "key_form_spent.html", {}, 409)
    raw, record = await run(lambda: _create(visit, wanted))
    return await render(request, visit, "key_created.html", {"raw_key": raw, "key": record, "rolled": None})


async def _spend(visit: Visit, token: object) -> bool:
    """Spend the form's one-time token: a reload that re-posts the form must not act twice."""
    assert visit.session is not None
    session_id = visit.session.id
    value = token if isinstance(token, str) else ""
    return await run(lambda: visit.services.web_sessions.spend_form_token(session_id, value))


def _create(visit: Visit, wanted: NewKey) -> tuple[str, KeyRecord]:
    assert visit.account is not None
    return visit.services.key_lifecycle.create(
        visit.account.id,
        wanted.name,
        visit.as_actor(),
        expires_at=wanted.expires_at,
        read_only=wanted.read_only,
    )


async def key_detail(request: Request) -> Response:
    visit = await require_account(request)
    record = await _own_key(request, visit)
    show_all = request.query_params.get("requests") == "all"
    context = await _detail_context(visit, record, show_all=show_all)
    return await render(request, visit, "key_detail.html", context)


async def _detail_context(
    visit: Visit, record: KeyRecord, errors: dict[str, str] | None = None, *, show_all: bool = False
) -> dict[str, object]:
    usage: KeyUsagePanel = await key_usage(visit, record)
    requests: KeyRequestsPanel = await key_requests(visit, record, show_all=show_all)
    return {
        "key": record,
        "usage": usage,
        "requests": requests,
        "errors": errors or {},
        "default_rate_limit": visit.services.settings.rate_limit,
        "values": {
            "name": record.name,
            "old_expires": DEFAULT_ROLL,
            "networks": "\n".join(record.allowed_networks) or "any",
        },
        "roll_choices": {code: label for code, (label, _) in ROLL_CHOICES.items()},
        "form_token": secrets.token_urlsafe(24),
    }


async def rename_key(request: Request) -> Response:
    visit, form = await read_form(request)
    visit = await require_account(request)
    record = await _own_key(request, visit)
    try:
        name = parse_rename(form)
    except FormInvalid as exc:
        context = await _detail_context(visit, record, exc.errors)
        context["values"] = {**context["values"], "name": exc.values.get("name", "")}  # type: ignore[dict-item]
        return await render(request, visit, "key_detail.html", context, 400)

    def rename() -> None:
        visit.services.key_lifecycle.rename(record.account_id, record.id, name, visit.as_actor())
        assert visit.session is not None
        visit.services.web_sessions.set_flash(visit.session.id, f"Renamed the key to “{name}”.")

    await run(rename)
    return redirect(visit, f"/dashboard/api-keys/{record.id}")


async def roll_key(request: Request) -> Response:
    visit, form = await read_form(request)
    visit = await require_account(request)
    record = await _own_key(request, visit)
    assert visit.account is not None
    if not visit.account.verified:
        return await _verify_first(request, visit)  # a roll creates a key too
    if record.state(utcnow()) != "active":
        raise Conflict("Only an active key can be rolled. Create a new key instead.")
    try:
        delay = parse_roll(form)
    except FormInvalid as exc:
        context = await _detail_context(visit, record, exc.errors)
        return await render(request, visit, "key_detail.html", context, 400)
    await require_fresh(request, visit, form, f"roll the API key “{record.name}” ({record.hint})")
    if not await _spend(visit, form.get("form_token")):
        return await render(request, visit, "key_form_spent.html", {}, 409)
    rolled = await run(
        lambda: visit.services.key_lifecycle.roll(
            record.account_id, record.id, visit.as_actor(), old_expires_in=delay
        )
    )
    context = {"raw_key": rolled.raw_key, "key": rolled.new, "rolled": rolled.old}
    return await render(request, visit, "key_created.html", context)


async def set_key_networks(request: Request) -> Response:
    """The key's IP allowlist: networks one per line (or separated by spaces or commas), or "any"."""
    visit, form = await read_form(request)
    visit = await require_account(request)
    record = await _own_key(request, visit)
    value = form.get("networks")
    text = value[:_MAX_NETWORKS_TEXT] if isinstance(value, str) else ""
    try:
        if not text.strip():
            raise ValidationFailed("Enter the networks this key may be used from, one per line, or “any”.")
        entries = [] if text.strip().lower() == "any" else re.split(r"[\s,]+", text)
        networks = parse_networks(entries)
    except ValidationFailed as exc:
        context = await _detail_context(visit, record, {"networks": exc.detail})
        context["values"] = {**context["values"], "networks": text}  # type: ignore[dict-item]
        return await render(request, visit, "key_detail.html", context, 400)
    await require_fresh(
        request, visit, form, f"change where the API key “{record.name}” ({record.hint}) may be used from"
    )

    def allow() -> None:
        visit.services.key_lifecycle.allow_networks(
            record.id, networks, visit.as_actor(), account_id=record.account_id
        )
        assert visit.session is not None
        shown = ", ".join(networks) if networks else "any address"
        visit.services.web_sessions.set_flash(
            visit.session.id, f"“{record.name}” may now be used from {shown}."
        )

    await run(allow)
    return redirect(visit, f"/dashboard/api-keys/{record.id}")


async def revoke_key_form(request: Request) -> Response:
    visit = await require_account(request)
    record = await _own_key(request, visit)
    return await render(request, visit, "key_revoke.html", {"key": record})


async def revoke_key(request: Request) -> Response:
    visit, _ = await read_form(request)
    visit = await require_account(request)
    record = await _own_key(request, visit)

    def revoke() -> None:
        visit.services.key_lifecycle.revoke(record.account_id, record.id, visit.as_actor())
        assert visit.session is not None
        visit.services.web_sessions.set_flash(
            visit.session.id, f"Revoked “{record.name}” ({record.hint}). It no longer works."
        )

    await run(revoke)
    return redirect(visit, "/dashboard/api-keys")
