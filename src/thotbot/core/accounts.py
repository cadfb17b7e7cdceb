"""Account rules, pure: email normalisation and validation, password hashing."""

from __future__ import annotations

import re

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from thotbot.core.common_passwords import password_weakness
from thotbot.core.errors import ValidationFailed

__all__ = [
    "MIN_PASSWORD_LENGTH",
    "check_new_password",
    "check_password_strength",
    "hash_password",
    "normalize_email",
    "verify_password",
]

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024
_EMAIL_RE = re.compile(r"[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f]+\.[^@\s\x00-\x1f\x7f]+")
# C0 and C1 control characters but tab and line breaks, which are trimmed or refused as spaces.
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_WEAKNESSES = {
    "common": "This password is too easy to guess: it is among the first ones attackers try. "
    "Try a few unrelated words.",
    "email": "This password is too easy to guess: it is made from your email address. "
    "Try a few unrelated words.",
}
_hasher = PasswordHasher()  # argon2id with the library's RFC 9106 low-memory defaults


def normalize_email(email: str) -> str:
    """Lower-case and trim an address, or raise ValidationFailed saying what is wrong."""
    if _CONTROL_RE.search(email):
        # Checked before trimming: NUL and the like are refused, never silently stripped.
        raise ValidationFailed(
            "Enter a valid email address, such as you@example.com: it cannot contain control "
            "characters (such as NUL).",
            field="email",
        )
    value = email.strip().lower()
    if len(value) > 320 or not _EMAIL_RE.fullmatch(value):
        raise ValidationFailed("Enter a valid email address, such as you@example.com.", field="email")
    return value


def check_password_strength(password: str) -> None:
    """Length only; a password being chosen also gets check_new_password's common-password check."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationFailed(
            f"Use a password of at least {MIN_PASSWORD_LENGTH} characters.", field="password"
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ValidationFailed("That password is too long.", field="password")


def check_new_password(password: str, email: str | None = None) -> None:
    """The rules for a password being chosen: its length, and not a common or guessable one."""
    check_password_strength(password)
    weakness = password_weakness(password, email)
    if weakness is not None:
        raise ValidationFailed(_WEAKNESSES[weakness], field="password")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    if not password_hash:
        return False
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False
