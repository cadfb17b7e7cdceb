"""Flash notices for a visitor not signed in: carried by a signed cookie, so they need no row."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

__all__ = ["MAX_MESSAGE", "read_flash", "sign_flash"]

#: Notices are one sentence or two; the cookie stays far below the browsers' 4 KB.
MAX_MESSAGE = 500
#: The HMAC's message starts with this, so a flash is never valid as anything else the key signs.
_PURPOSE = b"thotbot flash v1\x00"


def sign_flash(key: bytes, message: str) -> str:
    data = message[:MAX_MESSAGE].encode("utf-8")
    return _b64(data) + "." + _b64(_mac(key, data))


def read_flash(key: bytes, value: str | None) -> str | None:
    """The notice in a cookie value, or None when there is none or it was not signed by us."""
    if not value or len(value) > 4 * MAX_MESSAGE:
        return None
    encoded, _, mac = value.partition(".")
    try:
        data, given = _unb64(encoded), _unb64(mac)
        if not hmac.compare_digest(given, _mac(key, data)):
            return None
        return data.decode("utf-8")
    except (binascii.Error, ValueError):
        return None


def _mac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, _PURPOSE + data, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text.encode("ascii") + b"=" * (-len(text) % 4))
