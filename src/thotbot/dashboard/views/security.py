"""The overview and the Security page: its sections, sessions (end one, end the others) and the log."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from thotbot.core.dates import utcnow
from thotbot.dashboard.sudo import is_fresh
from thotbot.dashboard.templating import describe_user_agent
from thotbot.dashboard.web import Visit, read_form, redirect, render, require_account, run
from thotbot.storage.security_log import PAGE_SIZE, Cursor, parse_cursor

__all__ = ["end_other_sessions", "end_session", "overview", "security", "security_page"]

#: Entries per page of the security log; older ones are a link away ("Older"), never dropped.
LOG_ROWS = PAGE_SIZE


async def overview(request: Request) -> Response:
    visit = await require_account(request)
    assert visit.account is not None
    account_id, services = visit.account.id, visit.services

    def load() -> dict[str, object]:
        now = utcnow()
        keys = services.keys.list_for_account(account_id)
        return {
            "active_keys": sum(1 for k in keys if k.state(now) == "active"),
            "total_keys": len(keys),
            "sessions": len(services.web_sessions.list_for_account(account_id)),
            "events": services.security_log.list_for_account(account_id, limit=5),
        }

    return await render(request, visit, "dashboard.html", await run(load))


async def security(request: Request) -> Response:
    visit = await require_account(request)
    return await security_page(request, visit)


async def security_page(
    request: Request,
    visit: Visit,
    *,
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    """The Security page, or the same page again with a form's errors and what was typed."""
    assert visit.account is not None
    account_id, services = visit.account.id, visit.services

    before, after, bad_cursor = _cursors(request)

    def load() -> dict[str, object]:
        page = services.security_log.page(account_id, before=before, after=after, limit=LOG_ROWS)
        return {
            "passkeys": services.account_security.list_passkeys(account_id),
            "pending_email": services.account_security.pending_email_change(account_id),
            "sessions": services.web_sessions.list_for_account(account_id),
            "events": page.events,
            "log_page": page,
        }

    context = await run(load)
    if bad_cursor:
        message = "That page of the log does not exist: here are the newest entries."
        errors = {"log": message, **(errors or {})}
        status = 400 if status == 200 else status
    context.update(
        errors=errors or {},
        values={"passkey_name": _suggested_name(visit.user_agent), **(values or {})},
        fresh=is_fresh(visit),
    )
    return await render(request, visit, "security.html", context, status)


async def end_session(request: Request) -> Response:
    visit, _ = await read_form(request)
    visit = await require_account(request)
    assert visit.account is not None
    assert visit.session is not None
    account_id, current = visit.account.id, visit.session.id
    target = request.path_params["session_id"]
    store = visit.services.web_sessions

    def end() -> bool:
        if not store.delete(target, account_id=account_id):
            store.set_flash(current, "That session had already ended.")
            return False
        visit.log("session.ended", detail=f"ended {target}" + (" (this one)" if target == current else ""))
        if target != current:
            store.set_flash(current, "Session ended: that browser is signed out.")
        return True

    if await run(end) and target == current:
        visit.session, visit.account, visit.end_cookie = None, None, True
        return redirect(visit, "/login")
    return redirect(visit, "/dashboard/security#sessions")


async def end_other_sessions(request: Request) -> Response:
    visit, _ = await read_form(request)
    visit = await require_account(request)
    assert visit.account is not None
    assert visit.session is not None
    account_id, current = visit.account.id, visit.session.id
    store = visit.services.web_sessions

    def end() -> None:
        ended = store.delete_for_account(account_id, keep=current)
        visit.log("session.ended_others", detail=f"ended {ended} other session{'s' if ended != 1 else ''}")
        message = "No other session was active." if not ended else f"Signed out everywhere else ({ended})."
        store.set_flash(current, message)

    await run(end)
    return redirect(visit, "/dashboard/security#sessions")


def _cursors(request: Request) -> tuple[Cursor | None, Cursor | None, bool]:
    """The log page asked for: (before, after, whether a cursor given was not one)."""
    before_text = request.query_params.get("before")
    after_text = request.query_params.get("after")
    before = parse_cursor(before_text) if before_text is not None else None
    after = parse_cursor(after_text) if after_text is not None and before_text is None else None
    bad = (before_text is not None and before is None) or (
        before_text is None and after_text is not None and after is None
    )
    return before, after, bad


def _suggested_name(user_agent: str | None) -> str:
    """A name for a new passkey, from the browser adding it ("Chrome on macOS"); editable."""
    device = describe_user_agent(user_agent)
    return device if " on " in device and len(device) <= 40 else "My passkey"
