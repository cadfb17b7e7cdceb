"""Account rules, pure: email normalisation and validation, password hashing."""

from __future__ import annotations

import re

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from thotbot.errors import ValidationFailed

__all__ = ["MIN_PASSWORD_LENGTH", "hash_password", "normalize_email", "verify_password"]

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024
_EMAIL_RE = re.compile(r"[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f]+\.[^@\s\x00-\x1f\x7f]+")
_hasher = PasswordHasher()  # argon2id with the library's RFC 9106 low-memory defaults


def normalize_email(email: str) -> str:
    """Lower-case and trim an address, or raise ValidationFailed saying what is wrong."""
    value = email.strip().lower()
    if len(value) > 320 or not _EMAIL_RE.fullmatch(value):
        raise ValidationFailed("Enter a valid email address, such as you@example.com.", field="email")
    return value


def check_password_strength(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationFailed(
            f"Use a password of at least {MIN_PASSWORD_LENGTH} characters.", field="password"
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ValidationFailed("That password is too long.", field="password")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    if not password_hash:
        return False
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False
