"""The Jinja2 environment (autoescaped, strict) and the filters the templates use."""

from __future__ import annotations

from datetime import UTC, datetime

import jinja2
from starlette.templating import Jinja2Templates

from thotbot import __version__
from thotbot.core.reminders import expires_soon, time_left
from thotbot.core.revocation import revocation_phrase

__all__ = [
    "ACTION_LABELS",
    "absolute_time",
    "describe_actor",
    "describe_user_agent",
    "relative_time",
    "templates",
]

#: The security log's action codes, as people read them.
ACTION_LABELS = {
    "account.created": "Account created",
    "session.signed_in": "Signed in",
    "session.sign_in_failed": "Failed sign-in",
    "session.signed_out": "Signed out",
    "session.ended": "Session ended",
    "session.ended_others": "Other sessions ended",
    "key.created": "API key created",
    "key.renamed": "API key renamed",
    "key.rolled": "API key rolled",
    "key.expiry_changed": "API key expiry changed",
    "key.revoked": "API key revoked",
    "key.revoked_leaked": "API key revoked as leaked",
    "key.granted": "API key granted access",
    "key.networks_changed": "API key IP allowlist changed",
    "key.rate_limit_changed": "API key rate limit changed",
    "restricted.allowed": "Restricted endpoint called",
    "restricted.refused": "Restricted endpoint refused",
    "session.reauthenticated": "Identity confirmed",
    "passkey.added": "Passkey added",
    "passkey.renamed": "Passkey renamed",
    "passkey.removed": "Passkey removed",
    "password.changed": "Password changed",
    "password.change_refused": "Password change refused",
    "password.sign_in_paused": "Password sign-in paused",
    "email.change_requested": "Email change requested",
    "email.change_refused": "Email change refused",
    "email.change_cancelled": "Email change cancelled",
    "email.changed": "Email address changed",
    "account.verified": "Email address confirmed",
    "account.verification_sent": "Confirmation link sent",
    "account.disabled": "Account disabled",
    "account.enabled": "Account enabled",
    "password.reset_requested": "Password reset link sent",
    "password.reset": "Password reset",
}

_UNITS = (("minute", 60, 60), ("hour", 3600, 24), ("day", 86400, 100), ("month", 2_629_746, 12))
_BROWSERS = (
    ("Edg/", "Edge"),
    ("OPR/", "Opera"),
    ("Firefox/", "Firefox"),
    ("Chrome/", "Chrome"),
    ("Safari/", "Safari"),
)
_SYSTEMS = (
    ("Android", "Android"),
    ("iPhone", "iPhone"),
    ("iPad", "iPad"),
    ("Windows", "Windows"),
    ("Mac OS X", "macOS"),
    ("CrOS", "ChromeOS"),
    ("Linux", "Linux"),
)


def relative_time(when: datetime, now: datetime) -> str:
    """'3 days ago', 'in 2 hours', 'just now'."""
    seconds = (when - now).total_seconds()
    past = seconds <= 0
    amount = abs(seconds)
    if amount < 45:
        return "just now" if past else "in a few seconds"
    text = ""
    for unit, size, limit in _UNITS:
        count = max(1, round(amount / size))
        if count < limit:
            text = f"{count} {unit}{'s' if count != 1 else ''}"
            break
    else:
        years = max(1, round(amount / 31_556_952))
        text = f"{years} year{'s' if years != 1 else ''}"
    return f"{text} ago" if past else f"in {text}"


def absolute_time(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def describe_user_agent(user_agent: str | None) -> str:
    """'Chrome on Linux' for a browser; the User-Agent itself, shortened, for anything else."""
    if not user_agent:
        return "Unknown device"
    browser = next((name for token, name in _BROWSERS if token in user_agent), None)
    system = next((name for token, name in _SYSTEMS if token in user_agent), None)
    if browser and system:
        return f"{browser} on {system}"
    return user_agent if len(user_agent) <= 60 else user_agent[:59] + "…"


def describe_actor(actor: str, current_session: str = "") -> str:
    """Who did something, as the security log's reader understands it."""
    kind, _, ident = actor.partition(":")
    if kind == "session":
        return "You, in this browser" if ident == current_session else "You, on the dashboard"
    if kind == "api_key":
        return f"API key {ident}"
    return {
        "operator": "The operator",
        "anonymous": "Someone signing in",
        "revoke-leaked": "A leaked-key report",
        "secret-scanning": "GitHub secret scanning",
    }.get(actor, actor)


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("thotbot.dashboard", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["relative"] = relative_time
    env.filters["absolute"] = absolute_time
    env.filters["device"] = describe_user_agent
    env.filters["actor"] = describe_actor
    env.filters["action_label"] = lambda action: ACTION_LABELS.get(action, action)
    env.filters["revocation"] = revocation_phrase
    env.filters["expires_soon"] = expires_soon
    env.filters["time_left"] = time_left
    env.globals["version"] = __version__
    return env


templates = Jinja2Templates(env=_environment())
