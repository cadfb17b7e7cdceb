"""The dashboard's forms, pure: submitted fields in, typed values or errors per field out."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from thotbot.core.accounts import MAX_PASSWORD_LENGTH, check_new_password, normalize_email
from thotbot.core.errors import ValidationFailed
from thotbot.core.names import key_name_problem, tidy_key_name

__all__ = [
    "EXPIRY_CHOICES",
    "ROLL_CHOICES",
    "FormInvalid",
    "NewKey",
    "PasswordChange",
    "SignIn",
    "SignUp",
    "parse_email_change",
    "parse_forgot_password",
    "parse_new_key",
    "parse_new_password",
    "parse_passkey_name",
    "parse_password_change",
    "parse_rename",
    "parse_roll",
    "parse_sign_in",
    "parse_sign_up",
    "safe_next",
]

MAX_NAME = 100
MAX_EMAIL_FIELD = 320
#: Expiry choices of the Create New Key form, in the order shown; "date" reads `expiry_date`.
EXPIRY_CHOICES: dict[str, str] = {
    "30": "30 days",
    "90": "90 days",
    "365": "1 year",
    "date": "On a date",
    "never": "Never",
}
DEFAULT_EXPIRY = "90"
MAX_EXPIRY = timedelta(days=3660)
#: How long the old key keeps working after a roll.
ROLL_CHOICES: dict[str, tuple[str, timedelta]] = {
    "now": ("Now", timedelta(0)),
    "1h": ("In 1 hour", timedelta(hours=1)),
    "24h": ("In 24 hours", timedelta(hours=24)),
    "7d": ("In 7 days", timedelta(days=7)),
}
DEFAULT_ROLL = "24h"
_ENTER_IT = "Enter your password."
_ENTER_CURRENT = "Enter your current password."
_ENTER_NEW = "Enter a new password."
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass
class FormInvalid(Exception):
    """A form to show again: one message per field, and what was typed (never a password)."""

    errors: dict[str, str]
    values: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return "; ".join(f"{name}: {message}" for name, message in self.errors.items())


@dataclass(frozen=True, slots=True)
class SignUp:
    email: str
    password: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class SignIn:
    email: str
    password: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class PasswordChange:
    current: str = field(repr=False)
    new: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class NewKey:
    name: str
    expires_at: datetime | None
    read_only: bool


def _text(form: Mapping[str, object], name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def _email(form: Mapping[str, object], errors: dict[str, str]) -> str:
    raw = _text(form, "email")
    if not raw.strip():
        errors["email"] = "Enter your email address."
        return ""
    try:
        return normalize_email(raw[: MAX_EMAIL_FIELD + 1])
    except ValidationFailed as exc:
        errors["email"] = exc.detail
        return ""


def parse_sign_up(form: Mapping[str, object]) -> SignUp:
    errors: dict[str, str] = {}
    email = _email(form, errors)
    password = _text(form, "password")
    try:
        check_new_password(password, email or _text(form, "email"))
    except ValidationFailed as exc:
        errors["password"] = exc.detail
    if errors:
        raise FormInvalid(errors, {"email": _text(form, "email")[:MAX_EMAIL_FIELD]})
    return SignUp(email=email, password=password)


def parse_sign_in(form: Mapping[str, object]) -> SignIn:
    errors: dict[str, str] = {}
    email = _email(form, errors)
    password = _text(form, "password")
    if not password:
        errors["password"] = _ENTER_IT
    if errors:
        raise FormInvalid(errors, {"email": _text(form, "email")[:MAX_EMAIL_FIELD]})
    return SignIn(email=email, password=password[:1024])


def parse_forgot_password(form: Mapping[str, object]) -> str:
    """The address to mail a reset link to, normalised."""
    errors: dict[str, str] = {}
    email = _email(form, errors)
    if errors:
        raise FormInvalid(errors, {"email": _text(form, "email")[:MAX_EMAIL_FIELD]})
    return email


def parse_new_password(form: Mapping[str, object]) -> str:
    """The password typed on the reset page, present; its rules are account_recovery's to apply."""
    password = _text(form, "password")
    if not password:
        raise FormInvalid({"password": "Enter a new password."})
    return password[: MAX_PASSWORD_LENGTH + 1]


def parse_email_change(form: Mapping[str, object]) -> str:
    """The new email address, normalised."""
    errors: dict[str, str] = {}
    raw = _text(form, "email")
    email = _email(form, errors)
    if errors:
        if not raw.strip():
            errors["email"] = "Enter the new email address."
        raise FormInvalid(errors, {"email": raw[:MAX_EMAIL_FIELD]})
    return email


def parse_password_change(form: Mapping[str, object]) -> PasswordChange:
    """Both passwords, present; the rules for the new one are account_security's to apply."""
    errors: dict[str, str] = {}
    current, new = _text(form, "current_password"), _text(form, "new_password")
    if not current:
        errors["current_password"] = _ENTER_CURRENT
    if not new:
        errors["new_password"] = _ENTER_NEW
    if errors:
        raise FormInvalid(errors)
    return PasswordChange(current=current[:1024], new=new[:2048])


def parse_passkey_name(form: Mapping[str, object], field_name: str = "name") -> str:
    name = " ".join(_text(form, field_name).split())
    error = None
    if not name:
        error = "Give the passkey a name, such as the device that holds it."
    elif len(name) > MAX_NAME:
        error = f"Use at most {MAX_NAME} characters."
    elif not name.isprintable():
        error = "The name cannot hold control characters."
    if error:
        raise FormInvalid({field_name: error}, {field_name: _text(form, field_name)[: MAX_NAME * 2]})
    return name


def _name(form: Mapping[str, object], errors: dict[str, str]) -> str:
    # Only spaces, tabs and line breaks are tidied: str.split would also take U+001F and other
    # control characters for spaces and let them through.
    name = tidy_key_name(_text(form, "name"))
    problem = key_name_problem(name)
    if problem is not None:
        errors["name"] = problem
    return name


def parse_rename(form: Mapping[str, object]) -> str:
    errors: dict[str, str] = {}
    name = _name(form, errors)
    if errors:
        raise FormInvalid(errors, {"name": _text(form, "name")[: MAX_NAME * 2]})
    return name


def parse_new_key(form: Mapping[str, object], now: datetime) -> NewKey:
    errors: dict[str, str] = {}
    values = {
        "name": _text(form, "name")[: MAX_NAME * 2],
        "expiry": _text(form, "expiry"),
        "expiry_date": _text(form, "expiry_date")[:32],
        "access": _text(form, "access"),
    }
    name = _name(form, errors)
    expires_at = _expiry(values["expiry"], values["expiry_date"], now, errors)
    if values["access"] not in ("full", "read_only"):
        errors["access"] = "Choose full access or read-only."
    if errors:
        raise FormInvalid(errors, values)
    return NewKey(name=name, expires_at=expires_at, read_only=values["access"] == "read_only")


def _expiry(choice: str, day: str, now: datetime, errors: dict[str, str]) -> datetime | None:
    if choice == "never":
        return None
    if choice in ("30", "90", "365"):
        return now + timedelta(days=int(choice))
    if choice != "date":
        errors["expiry"] = "Choose when the key expires."
        return None
    try:
        chosen = date.fromisoformat(day.strip())
    except ValueError:
        errors["expiry_date"] = "Enter a date such as 2027-01-31."
        return None
    # The key works through the whole chosen day (UTC) and stops at the midnight that ends it.
    expires_at = datetime.combine(chosen + timedelta(days=1), time(0), tzinfo=UTC)
    if chosen <= now.astimezone(UTC).date():
        errors["expiry_date"] = "Choose a date after today."
    elif expires_at - now > MAX_EXPIRY:
        errors["expiry_date"] = "Choose a date within ten years, or choose Never."
    return expires_at


def parse_roll(form: Mapping[str, object]) -> timedelta:
    choice = ROLL_CHOICES.get(_text(form, "old_expires"))
    if choice is None:
        raise FormInvalid({"old_expires": "Choose when the old key stops working."})
    return choice[1]


def safe_next(value: object) -> str | None:
    """A dashboard path to go to after sign-in, or None: never another site (open redirect)."""
    if not isinstance(value, str) or len(value) > 512:
        return None
    if not value.startswith("/dashboard") or "\\" in value or "//" in value or _CONTROL.search(value):
        return None
    return value
