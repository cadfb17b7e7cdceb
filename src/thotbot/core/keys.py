"""API keys, pure: generate, parse, hash and hint. No I/O."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

from thotbot.core.errors import MalformedAPIKey

__all__ = [
    "HEX_DIGITS",
    "KEY_LENGTH",
    "PREFIX",
    "ParsedKey",
    "bearer_digest",
    "digest",
    "generate",
    "hash_key",
    "hint",
    "looks_like_key",
    "parse",
]

PREFIX = "thot_ak_"
HEX_DIGITS = 96  # 384 bits
KEY_LENGTH = len(PREFIX) + HEX_DIGITS
_KEY_RE = re.compile(r"thot_ak_[0-9a-f]{96}")


@dataclass(frozen=True, slots=True)
class ParsedKey:
    """A well-formed key: its hash is what storage knows it by."""

    digest: bytes
    hint: str

    def __repr__(self) -> str:
        return f"ParsedKey(hint={self.hint!r})"


def generate() -> str:
    """Return a new raw key: 384 bits from the operating system's CSPRNG."""
    return PREFIX + secrets.token_hex(HEX_DIGITS // 2)


def parse(token: str) -> ParsedKey:
    """Return the key's digest and hint, or raise MalformedAPIKey; never echoes the token."""
    return ParsedKey(digest=digest(token), hint=hint(token))


def digest(token: str) -> bytes:
    """The hash storage knows a key by, or MalformedAPIKey: ``parse`` without the hint, for the hot path."""
    # The length check first keeps a 200 kB header from reaching the regex.
    if len(token) != KEY_LENGTH or not _KEY_RE.fullmatch(token):
        raise MalformedAPIKey
    return hash_key(token)


_SCHEME = b"Bearer "
_BEARER = _SCHEME + PREFIX.encode("ascii")
_BEARER_LENGTH = len(_SCHEME) + KEY_LENGTH
_HEX = b"0123456789abcdef"


def bearer_digest(value: bytes | None) -> bytes | None:
    """``digest`` of an Authorization header value that is exactly ``Bearer`` and a key, as clients
    send it; None for any other value, which the full parse then judges (the hot path's shortcut:
    no decoding, no regular expression)."""
    if value is None or len(value) != _BEARER_LENGTH or not value.startswith(_BEARER):
        return None
    if value[len(_BEARER) :].translate(None, _HEX):
        return None  # something other than lowercase hexadecimal digits after the prefix
    return hashlib.sha256(value[len(_SCHEME) :]).digest()


def hash_key(raw: str) -> bytes:
    """SHA-256 of the key: a 384-bit random secret needs no slow or salted hash (docs/SECURITY.md)."""
    return hashlib.sha256(raw.encode("ascii")).digest()


def hint(raw: str) -> str:
    body = raw[len(PREFIX) :]
    return f"{PREFIX}{body[:4]}…{body[-4:]}"


def looks_like_key(value: str) -> bool:
    """True for anything that starts like a key, in any case; ``redaction.holds_key`` also decodes."""
    return PREFIX in value.lower()
